"""Pretext losses: L1 + SSIM on the hidden pixels only, cross-entropy on the origin of moved cells."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slsg.pretraining.pretext import IGNORE

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM of images in [0, 1] (uniform window, same size as the input, averaged over channels)."""
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), window, stride=1)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return (num / den).mean(dim=1, keepdim=True)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def inpainting_losses(pred: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """(L1, 1 − SSIM), each averaged over hidden pixels; pred/target RGB in [0, 1], hidden N×1×H×W."""
    l1 = _masked_mean((pred - target).abs().mean(dim=1, keepdim=True), hidden)
    dssim = _masked_mean(1.0 - ssim_map(pred, target), hidden)
    return l1, dssim


def position_loss(logits: torch.Tensor, origin: torch.Tensor, moved: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy over the moved cells (N×G²×G² logits); returns (loss, accuracy on those cells).

    Unmoved cells are left out: "every cell is where it is" would otherwise be a free answer.
    """
    if not bool(moved.any()):
        return logits.sum() * 0.0, float("nan")
    target = torch.where(moved, origin, torch.full_like(origin, IGNORE))
    flat_logits, flat_target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
    loss = F.cross_entropy(flat_logits, flat_target, ignore_index=IGNORE)
    keep = flat_target != IGNORE
    accuracy = (flat_logits[keep].argmax(dim=1) == flat_target[keep]).float().mean()
    return loss, float(accuracy)
