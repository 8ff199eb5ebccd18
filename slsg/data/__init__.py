"""Datasets (MVTec LOCO, MVTec AD, plain folders), anomaly synthesis and the synthetic LOCO-like scene."""

from slsg.data.images import BadImageError, DataError, read_image, write_png
from slsg.data.layouts import Category, DataReport, DatasetError, Issue, Sample, open_dataset
from slsg.data.loading import load_images, read_defect_masks, read_mask

__all__ = [
    "BadImageError", "Category", "DataError", "DataReport", "DatasetError", "Issue", "Sample", "load_images",
    "open_dataset", "read_defect_masks", "read_image", "read_mask", "write_png",
]
