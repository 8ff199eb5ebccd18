"""Anomaly-detection metrics in pure numpy/OpenCV: image AUROCs, pixel AUROC and AU-sPRO."""

from slsg.metrics.defects import (
    Defect,
    DefectConfigError,
    defects_from_channels,
    defects_from_mask,
    saturation_area,
)
from slsg.metrics.image import ImageAurocs, auroc, image_aurocs
from slsg.metrics.pixel import DEFAULT_LIMITS, PixelImage, PixelMetrics, au_spro, evaluate_pixels, pixel_auroc

__all__ = [
    "DEFAULT_LIMITS",
    "Defect",
    "DefectConfigError",
    "ImageAurocs",
    "PixelImage",
    "PixelMetrics",
    "au_spro",
    "auroc",
    "defects_from_channels",
    "defects_from_mask",
    "evaluate_pixels",
    "image_aurocs",
    "pixel_auroc",
    "saturation_area",
]
