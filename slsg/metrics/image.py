"""Image-level AUROCs, split the way MVTec LOCO and the SLSG authors report them.

- logical = AUROC(good ∪ logical), structural = AUROC(good ∪ structural);
- overall = AUROC over all test images: the SLSG README's "Mean" row (a positive-count-weighted mix);
- mean_ls = ½(logical + structural): the MVTec LOCO convention;
- per_defect[label] = AUROC(good ∪ that defect folder), the MVTec AD per-type view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def auroc(scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[bool]) -> float:
    """Exact AUROC (Mann–Whitney U with mid-ranks for ties; equals sklearn's roc_auc_score)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: the model or its input is broken")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes, got {n_pos} positive and {n_neg} negative samples")
    order = np.argsort(s, kind="mergesort")
    ordered = s[order]
    starts_mask = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(starts_mask)
    ends = np.r_[starts[1:], ordered.size]
    mid_rank = (starts + 1 + ends) / 2.0  # ranks starts+1 … ends share their mean
    ranks = np.empty(s.size)
    ranks[order] = mid_rank[np.cumsum(starts_mask) - 1]
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _auroc_or_none(scores: np.ndarray, positive: np.ndarray, keep: np.ndarray) -> float | None:
    y = positive[keep]
    if keep.sum() == 0 or y.all() or not y.any():
        return None
    return auroc(scores[keep], y)


@dataclass
class ImageAurocs:
    """Image AUROCs of one category; None where the split has no images."""

    structural: float | None
    logical: float | None
    overall: float | None
    mean_ls: float | None
    per_defect: dict[str, float] = field(default_factory=dict)


def image_aurocs(
    scores: Sequence[float] | np.ndarray, kinds: Sequence[str], labels: Sequence[str]
) -> ImageAurocs:
    """Every image AUROC of one category from per-image scores, kinds (good/logical/structural) and labels."""
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(kinds)
    lab = np.asarray(labels)
    good = k == "good"
    anomalous = ~good
    logical = _auroc_or_none(s, anomalous, good | (k == "logical"))
    structural = _auroc_or_none(s, anomalous, good | (k == "structural"))
    overall = _auroc_or_none(s, anomalous, np.ones(s.size, dtype=bool))
    mean_ls = None if logical is None or structural is None else 0.5 * (logical + structural)
    per_defect = {}
    for name in sorted(set(lab[anomalous].tolist())):
        value = _auroc_or_none(s, anomalous, good | (lab == name))
        if value is not None:
            per_defect[name] = value
    return ImageAurocs(structural, logical, overall, mean_ls, per_defect)
