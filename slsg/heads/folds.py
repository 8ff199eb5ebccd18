"""The cross-fit folds every fitted head shares: which training images each fold holds out."""

from __future__ import annotations

import numpy as np

#: Folds of the cross-fit. Each fold's fit sees 4/5 of the images: its scores are a little larger than the full
#: fit's on new images, so a reference made of them errs towards fewer false rejects.
CROSS_FIT_FOLDS = 5
#: The folds' draw: fixed, so a refit of the same images (an INT8 file's, `export.head_refit`) draws the same.
CROSS_FIT_SEED = 0


def fold_indices(n: int, folds: int = CROSS_FIT_FOLDS, seed: int = CROSS_FIT_SEED) -> list[np.ndarray]:
    """The held-out image indices of each fold: a seeded permutation dealt round-robin (every image held out
    once). Fewer folds when there are fewer than two images a fold; an error below four images."""
    folds = min(folds, n // 2)
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 4 training images, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[k::folds]) for k in range(folds)]
