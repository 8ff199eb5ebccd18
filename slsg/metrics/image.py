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

from edge_runtime.statistics import auroc


def _auroc_or_none(scores: np.ndarray, positive: np.ndarray, keep: np.ndarray) -> float | None:
    value = auroc(scores[keep], positive[keep])
    return None if np.isnan(value) else value


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
