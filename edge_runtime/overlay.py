"""Heatmap overlay: the picture an operator looks at when a part is rejected (runtime and `slsg predict`)."""

from __future__ import annotations

import cv2
import numpy as np


def heatmap_overlay(
    image_bgr: np.ndarray,
    anomaly_map: np.ndarray,
    alpha: float = 0.5,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Blend a JET-coloured anomaly map onto a uint8 BGR image of any size.

    The map is scaled by a fixed `value_range` (not per image), so a calm map stays blue and two frames'
    heatmaps can be compared by colour.
    """
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"overlay needs a uint8 BGR H×W×3 image, got {image_bgr.dtype} {image_bgr.shape}")
    m = np.asarray(anomaly_map, dtype=np.float32).squeeze()
    if m.ndim != 2:
        raise ValueError(f"overlay needs one H×W anomaly map, got shape {np.shape(anomaly_map)}")
    lo, hi = value_range
    scaled = np.clip((m - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    h, w = image_bgr.shape[:2]
    if scaled.shape != (h, w):
        scaled = cv2.resize(scaled, (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((scaled * 255.0 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(colour, float(alpha), image_bgr, 1.0 - float(alpha), 0.0)
