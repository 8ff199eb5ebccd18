"""The PyTorch predictor: uint8 BGR frames in, anomaly maps out — the same contract as the runtime backends."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slsg.model import SLSGNet, anomaly_map
from slsg.model.preprocess import InputAdapter, normalization_for


class DeployModel(nn.Module):
    """What is exported: uint8 BGR N×H×W×3 → (anomaly_map N×1×H×W, score N). Score from the shared rule."""

    def __init__(self, model: SLSGNet) -> None:
        super().__init__()
        from edge_runtime.scoring import TOP_K

        self.adapter = InputAdapter(normalization_for(model.cfg.normalization_name))
        self.model = model
        self.top_k = TOP_K

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _ = self.model(self.adapter(image))
        amap = anomaly_map(logits).unsqueeze(1)
        k = min(self.top_k, amap.shape[-1] * amap.shape[-2])
        score = torch.topk(amap.flatten(1), k, dim=1).values.mean(dim=1)
        return amap, score


class TorchPredictor:
    """Callable: uint8 BGR N×H×W×3 numpy → float32 maps N×H×W (see docs/architecture.md, Predictors)."""

    def __init__(self, model: SLSGNet, device: str | torch.device = "cpu", batch: int = 8) -> None:
        self.deploy = DeployModel(model).to(device).eval()
        self.device = torch.device(device)
        self.batch = batch

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + self.batch])).to(self.device)
            amap, _ = self.deploy(x)
            out.append(amap[:, 0].float().cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0,), np.float32)
