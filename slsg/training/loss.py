"""The reference loss: 0.4·focal(γ=4) + 0.6·L1 + 0.3·aux-L1, all on softmax probabilities."""

from __future__ import annotations

import math

import torch


def focal_on_probabilities(prob: torch.Tensor, target: torch.Tensor, gamma: float = 4.0,
                           smooth: float = 1e-5) -> torch.Tensor:
    """DRAEM/SLSG focal loss on probabilities (N×2×H×W) against a {0,1} mask (N×1×H×W), α = 1."""
    onehot = torch.cat([1.0 - target, target], dim=1).clamp(smooth, 1.0 - smooth)
    pt = (onehot * prob).sum(dim=1) + smooth
    return (-(1.0 - pt).pow(gamma) * pt.log()).mean()


def slsg_loss(logits: torch.Tensor, aux_logits: torch.Tensor, target: torch.Tensor, gamma: float = 4.0,
              weights: tuple[float, float, float] = (0.4, 0.6, 0.3)) -> tuple[torch.Tensor, dict[str, float]]:
    prob = torch.softmax(logits, dim=1)
    aux = torch.softmax(aux_logits, dim=1)
    focal = focal_on_probabilities(prob, target, gamma)
    l1 = (prob[:, 1:2] - target).abs().mean()
    l1_aux = (aux[:, 1:2] - target).abs().mean()
    total = weights[0] * focal + weights[1] * l1 + weights[2] * l1_aux
    parts = {"loss": total, "focal": focal, "l1": l1, "l1_aux": l1_aux}
    return total, {k: float(v.detach()) for k, v in parts.items()}


def cosine_lr(step: int, total: int, base: float) -> float:
    """One cosine from `base` to 0 over `total` steps (CosineAnnealingWarmRestarts with T_0 = total)."""

    return 0.5 * base * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
