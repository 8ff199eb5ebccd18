"""A PNG that shows what the pretext asks and what the network answers: masked inputs, inpaintings, originals."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from edge_runtime.preprocess import Normalization
from slsg.data import write_png
from slsg.pretraining.decoder import PretextNet
from slsg.pretraining.pretext import make_pretext

HIDDEN_GRAY = 0.5


def _to_bgr_uint8(rgb01: torch.Tensor) -> np.ndarray:
    """N×3×H×W RGB in [0, 1] → N×H×W×3 uint8 BGR."""
    arr = (rgb01.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return np.ascontiguousarray(arr[..., ::-1])


def denormalize(x: torch.Tensor, norm: Normalization) -> torch.Tensor:
    mean = torch.tensor(norm.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, device=x.device).view(1, 3, 1, 1)
    return x * std + mean


@torch.no_grad()
def preview_rows(net: PretextNet, x: torch.Tensor, target: torch.Tensor, norm: Normalization, grid: int,
                 mask_ratio: float, shuffle_ratio: float, seed: int) -> list[np.ndarray]:
    """Three rows of N images (uint8 BGR): pretext input (hidden cells gray), inpainted, original.

    Runs a copy of the network with batch statistics, as in training, so the real one is left untouched.
    """
    gen = torch.Generator().manual_seed(seed)
    batch = make_pretext(x, grid, mask_ratio, shuffle_ratio, gen)
    probe = copy.deepcopy(net).train()
    pred, _ = probe(batch.inputs)
    shown = denormalize(batch.inputs, norm)
    masked = shown * (1 - batch.hidden) + HIDDEN_GRAY * batch.hidden
    inpainted = shown * (1 - batch.hidden) + pred * batch.hidden
    return [_to_bgr_uint8(t) for t in (masked, inpainted, target)]


def write_preview(path: Path, rows: list[np.ndarray], gap: int = 4) -> Path:
    """Tile rows of images into one PNG with white gaps."""

    n, h, w, _ = rows[0].shape
    sheet = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    write_png(Path(path), sheet)
    return Path(path)
