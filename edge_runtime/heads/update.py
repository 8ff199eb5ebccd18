"""Updating a fitted head with new good images, without the images it was fitted on: what the line's refit does.

The training images stay on the training machine; the bundle keeps the heads' statistics. Those are enough:

- the global head's Gaussian is a mean and a covariance. The covariance is the precision's inverse
  (`whiten` is its Cholesky factor), so the new good images' descriptors are pooled in with the training set's, each
  image weighing as much as one training image (`n_reference` of them), in the standardised space the head works
  in; the standardisation itself (`inv_std`) stays, so a dimension frozen at fit stays frozen;
- the local head's memory is a coreset of good patches: the new images' patches join the memory's own, and the
  same farthest-point rule picks a memory of the same size from them, so patches unlike any the memory had (the
  drifted light, the new colour) get their place while the coverage of the old ones degrades least.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.heads.memory import greedy_coreset, memory_columns, memory_rows


def pooled_gaussian(stats: dict, descriptors: np.ndarray, n_reference: int) -> dict:
    """{mean, inv_std, whiten} with the N×D `descriptors` pooled in beside the `n_reference` images behind `stats`."""
    mean = np.asarray(stats["mean"], dtype=np.float64)
    inv_std = np.asarray(stats["inv_std"], dtype=np.float64)
    whiten = np.asarray(stats["whiten"], dtype=np.float64)
    frozen = inv_std == 0
    z = (np.asarray(descriptors, dtype=np.float64) - mean) * inv_std
    n, m = float(max(n_reference, 1)), float(len(z))
    cov = np.linalg.inv(whiten @ whiten.T)  # the precision is L·Lᵀ
    shift = z.sum(axis=0) / (n + m)  # the reference's mean is 0 in this space
    pooled = (n * cov + z.T @ z) / (n + m) - np.outer(shift, shift)
    pooled[frozen, :] = 0.0
    pooled[:, frozen] = 0.0
    pooled[frozen, frozen] = 1.0
    precision = np.linalg.inv(pooled)
    precision = 0.5 * (precision + precision.T)
    return {"mean": mean + np.where(frozen, 0.0, shift / np.where(frozen, 1.0, inv_std)), "inv_std": inv_std,
            "whiten": np.linalg.cholesky(precision)}


def extended_memory(columns: np.ndarray, rows: np.ndarray, projection: int, seed: int) -> tuple[np.ndarray, dict]:
    """The graph's memory columns chosen again from the memory's patches and the new `rows`, at the same size; and
    how many of the new patches it kept."""
    old = memory_rows(columns)
    pool = np.concatenate([old, np.asarray(rows, dtype=np.float32)])
    core = greedy_coreset(pool, len(old), projection, seed)
    kept_new = int((core.indices >= len(old)).sum())
    return memory_columns(pool[core.indices]), {"memory": len(old), "new_patches": int(len(rows)),
                                                "new_kept": kept_new, "radius": float(core.radius[-1])}
