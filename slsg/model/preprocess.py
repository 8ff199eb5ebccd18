"""The torch twin of `edge_runtime.preprocess.normalize`, used inside training and the ONNX graph.

The constants come from the one shared definition; a test proves both give the same numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_runtime.preprocess import HALF, IMAGENET, Normalization

NORMALIZATIONS = {"imagenet": IMAGENET, "half": HALF}


def normalization_for(name: str) -> Normalization:
    return NORMALIZATIONS[name]


class InputAdapter(nn.Module):
    """uint8 BGR N×H×W×3 (what OpenCV gives) → normalised float RGB N×3×H×W."""

    def __init__(self, norm: Normalization) -> None:
        super().__init__()
        # Folded into one multiply-add: x·(1/(255·std)) − mean/std, per RGB channel.
        std = torch.tensor(norm.std, dtype=torch.float32)
        mean = torch.tensor(norm.mean, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        x = x.flip(1)  # BGR → RGB
        return x * self.scale + self.shift
