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


def display_map(anomaly_map: np.ndarray, head_maps: dict[str, np.ndarray] | None = None,
                norms: dict[str, dict] | None = None) -> np.ndarray:
    """The heatmap an operator sees: SLSG's anomaly probability and, where a head has a map of its own (the local
    head's patch distances, `map_local`), that map put on the same scale — 0 at the head's good median, 0.5 at its
    good 1 % tail (z = 1 in the fused score), 1 at twice that — the larger of the two at every pixel, so a small
    defect only the local head sees is as hot on the picture as one SLSG sees. `norms` are the fused score's
    per-head normalisations (`{head: {"location", "scale"}}`); a head without one is left out."""
    shown = np.asarray(anomaly_map, dtype=np.float32)
    for head, m in (head_maps or {}).items():
        norm = (norms or {}).get(head)
        if not norm or not norm.get("scale"):
            continue
        z = (np.asarray(m, dtype=np.float32) - float(norm["location"])) / (2.0 * float(norm["scale"]))
        shown = np.maximum(shown, np.clip(z, 0.0, 1.0).reshape(shown.shape))
    return shown
