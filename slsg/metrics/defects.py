"""Ground-truth defects as the sPRO metric sees them: a region and the true-positive area that saturates it.

MVTec LOCO (official layout): every PNG of an image is one defect whose non-zero pixels carry one value v;
`defects_config.json` gives v's saturation: `relative_saturation` → ⌊threshold · area⌋, else
min(threshold, area). Without a config (MVTec AD, plain folders, merged LOCO masks) every 8-connected
component of the mask is one defect saturating at its own area, which makes sPRO the classic PRO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_runtime.errors import SlsgError


class DefectConfigError(SlsgError, ValueError):
    """A ground-truth value that defects_config.json does not describe, or a malformed entry."""


@dataclass
class Defect:
    """One defect region (bool H×W at the ground truth's native size) and its saturation area in pixels."""

    mask: np.ndarray
    saturation: float

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


def saturation_area(area: int, entry: dict) -> float:
    """Saturation of a defect of `area` pixels under one defects_config entry (at least one pixel)."""
    try:
        threshold = float(entry["saturation_threshold"])
        relative = bool(entry["relative_saturation"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DefectConfigError(
            f"defects_config entry {entry!r} lacks saturation_threshold/relative_saturation"
        ) from exc
    s = math.floor(threshold * area) if relative else min(threshold, float(area))
    return float(max(s, 1))


def config_by_value(config: list[dict]) -> dict[int, dict]:
    """Index defects_config entries by their pixel value."""
    try:
        return {int(e["pixel_value"]): e for e in config}
    except (KeyError, TypeError, ValueError) as exc:
        raise DefectConfigError("every defects_config entry needs an integer pixel_value") from exc


def defects_from_channels(
    channels: list[tuple[np.ndarray, int]], config: list[dict], where: str = ""
) -> list[Defect]:
    """One defect per ground-truth PNG (mask, pixel value); saturation from the config entry of that value."""
    entries = config_by_value(config)
    defects = []
    for mask, value in channels:
        region = np.asarray(mask) != 0
        if not region.any():
            continue
        if int(value) not in entries:
            known = ", ".join(str(v) for v in sorted(entries))
            raise DefectConfigError(
                f"ground truth {where or '(unnamed)'} has pixel value {value}, which "
                f"defects_config.json does not list (known: {known}); fix the mask or the config"
            )
        area = int(np.count_nonzero(region))
        defects.append(Defect(region, saturation_area(area, entries[int(value)])))
    return defects


def defects_from_mask(mask: np.ndarray) -> list[Defect]:
    """Each 8-connected component of a (merged) mask is one defect that saturates at its own area."""
    region = (np.asarray(mask) != 0).astype(np.uint8)
    if region.ndim != 2:
        raise ValueError(f"a defect mask must be H×W, got shape {region.shape}")
    n, labels = cv2.connectedComponents(region, connectivity=8)
    defects = []
    for k in range(1, n):
        comp = labels == k
        defects.append(Defect(comp, float(np.count_nonzero(comp))))
    return defects
