"""What training reads: good images in RAM, a validation slice for the threshold, a data fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.manifest import sha256_file
from edge_runtime.preprocess import prepare
from slsg.data.foreground import ProductProfile, profile_product
from slsg.data.layouts import Category, DataReport, Sample, open_dataset
from slsg.data.loading import load_images


@dataclass
class TrainingData:
    category: Category
    train_images: list[np.ndarray]
    train_samples: list[Sample]
    val_samples: list[Sample]
    fingerprint: dict
    report: DataReport


def fingerprint(samples: list[Sample], root: Path) -> dict:
    """sha256 over (relative path, file sha256) of every training image: says exactly what a model saw."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.path)):
        h.update(str(Path(s.path).relative_to(root)).encode())
        h.update(bytes.fromhex(sha256_file(Path(s.path))))
    return {"sha256": h.hexdigest(), "n_images": len(samples), "root": str(root)}


def split_validation(category: Category, fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """LOCO validation/good when present; else a seeded held-out slice of train/good (never test data)."""
    train = list(category.train)
    if category.validation:
        return train, list(category.validation)
    if fraction <= 0 or len(train) < 2:
        return train, []
    n_val = max(1, int(round(len(train) * fraction)))
    order = np.random.default_rng(seed).permutation(len(train))
    val = {int(i) for i in order[:n_val]}
    return [s for i, s in enumerate(train) if i not in val], [s for i, s in enumerate(train) if i in val]


def load_training_data(data: Path, category: str | None, size: int, val_fraction: float,
                       seed: int) -> TrainingData:
    categories = open_dataset(Path(data), category)
    if len(categories) != 1:
        names = ", ".join(c.name for c in categories)
        raise ValueError(f"{data} holds several categories ({names}): pick one with --category")
    cat = categories[0]
    train_samples, val_samples = split_validation(cat, val_fraction, seed)
    images, kept = load_images(train_samples, size, cat.report)
    if not images:
        raise ValueError(f"no readable training images under {cat.root}/train/good: add good images there")
    print_ = {**fingerprint(kept, cat.root), "category": cat.name, "layout": cat.layout}
    return TrainingData(cat, images, kept, val_samples, print_, cat.report)


def profile_of(td: TrainingData, hw: tuple[int, int], seed: int) -> ProductProfile:
    """What the good training images say about the product (object or surface, fixtured or turning), seen at the
    model's size (`slsg.data.foreground`)."""
    return profile_product([prepare(im, hw) for im in td.train_images], seed=seed)
