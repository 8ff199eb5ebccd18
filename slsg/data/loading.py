"""Decoding what `open_dataset` listed: masks per sample, and training images kept in RAM at model size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.backends.passes import in_order
from edge_runtime.preprocess import prepare
from slsg.data.images import BadImageError, read_image_with_note, read_mask_file
from slsg.data.layouts import DataReport, Sample


def read_defect_masks(sample: Sample) -> list[tuple[np.ndarray, int]]:
    """(uint8 mask as stored, its pixel value) per defect file; [] for good images.

    LOCO official masks hold one defect each, drawn with the defect type's `pixel_value`; merged masks
    (flattened LOCO, MVTec AD) give one entry with their largest value (usually 255).
    """
    out = []
    for path in sample.masks:
        m = read_mask_file(path)
        out.append((m, int(m.max())))
    return out


def read_mask(sample: Sample) -> np.ndarray | None:
    """bool H×W at native size: the OR of all defect masks; None for samples without masks."""
    if not sample.masks:
        return None
    merged = None
    for m, _ in read_defect_masks(sample):
        merged = m > 0 if merged is None else merged | (m > 0)
    return merged


def load_images(
    samples: Sequence[Sample], size: int | tuple[int, int], report: DataReport | None = None
) -> tuple[list[np.ndarray], list[Sample]]:
    """Decode and `prepare` each sample once (uint8 BGR at `size`), one image per core at once; undecodable files
    are reported, left out.

    Returns the images and the samples they came from (same order, bad ones removed).
    """

    def load(sample: Sample) -> tuple[np.ndarray | None, str | None, BadImageError | None]:
        try:
            img, note = read_image_with_note(sample.path)
        except BadImageError as e:
            return None, None, e
        return prepare(img, size), note, None

    images, kept = [], []
    for s, (img, note, error) in zip(samples, in_order(load, samples)):
        if error is not None:
            if report is None:
                raise error
            report.skip(s.path, str(error).split(": ", 1)[-1], "Replace or delete the file.")
            continue
        if note and report is not None:
            report.converted.append((s.path, note))
        images.append(img)
        kept.append(s)
    return images, kept
