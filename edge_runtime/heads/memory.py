"""The local head's patch memory in numpy: the coreset that chooses it, the nearest-patch search outside the graph,
and the layout the exported graph stores. One definition for training (`slsg.heads.local_patch`), the export's
per-file refit and the line's refit, which runs without torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def memory_columns(memory: np.ndarray) -> np.ndarray:
    """The (D+1)×M matrix the search multiplies patches (with a 1 appended) by: [−2·m; ‖m‖²] per memory patch
    (what the exported graph stores as `deploy.local_head.memory`)."""
    m = np.asarray(memory, dtype=np.float64)
    return np.ascontiguousarray(np.concatenate([-2.0 * m, (m * m).sum(axis=1, keepdims=True)], axis=1).T,
                                dtype=np.float32)


def memory_rows(columns: np.ndarray) -> np.ndarray:
    """The M×D memory patches back from the graph's (D+1)×M columns (`memory_columns`' inverse)."""
    return np.ascontiguousarray(-0.5 * np.asarray(columns, dtype=np.float32)[:-1].T)


@dataclass
class Coreset:
    """The rows picked, in order, and after each pick the coverage radius: the largest distance of any row to its
    nearest pick (in the projection the picks were made in). The radius curve is what the memory size is read
    from: it falls fast while the picks cover new kinds of patch and flattens once they only split fine ones."""

    indices: np.ndarray
    radius: np.ndarray


def greedy_coreset(x: np.ndarray, size: int, projection: int = 128, seed: int = 0) -> Coreset:
    """`size` rows of `x` chosen farthest-point first (Gonzalez' greedy k-center, as PatchCore).

    Each pick is the row farthest from every row picked so far, so the memory covers the rare patches a random
    sample would miss; the coverage radius is at most twice the optimum for that size. The distances are taken in
    a seeded Gaussian random projection to `projection` dims when the rows are wider (Johnson–Lindenstrauss:
    pairwise distances are kept to a few percent), which makes each pick one pass over the rows."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    size = min(int(size), n)
    rng = np.random.default_rng(seed)
    z = x
    if 0 < projection < x.shape[1]:
        z = x @ (rng.standard_normal((x.shape[1], projection)) / np.sqrt(projection)).astype(np.float32)
    z = np.ascontiguousarray(z)
    zz = (z * z).sum(axis=1)
    nearest = np.full(n, np.inf, dtype=np.float32)
    buf = np.empty(n, dtype=np.float32)
    picks = np.empty(size, dtype=np.int64)
    radius = np.empty(size, dtype=np.float64)
    i = int(rng.integers(n))
    for k in range(size):
        picks[k] = i
        np.dot(z, z[i], out=buf)  # ‖z − zᵢ‖² = ‖z‖² − 2 z·zᵢ + ‖zᵢ‖²: one pass, no N×D temporary
        buf *= -2.0
        buf += zz
        buf += zz[i]
        np.minimum(nearest, buf, out=nearest)
        nearest[i] = -1.0  # a picked row is never picked again, even where rounding leaves it a little above 0
        i = int(np.argmax(nearest))
        radius[k] = float(np.sqrt(max(float(nearest[i]), 0.0)))
    return Coreset(picks, radius)


def nearest_distances(memory: np.ndarray, rows: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Each row's Euclidean distance to its nearest memory row (the head's `distances` outside the graph).

    The nearest row is found as the graph finds it — the products against `memory_columns` in float32 — and its
    distance is then taken exactly, in float64 from the two rows themselves: no cancellation of ‖q‖² against
    2 q·m, and no float64 copy of the chunk × memory products (those copies cost seconds a call)."""
    m = np.asarray(memory, dtype=np.float32)
    columns = memory_columns(m)
    out = np.empty(len(rows), dtype=np.float64)
    for i in range(0, len(rows), chunk):
        q = np.asarray(rows[i:i + chunk], dtype=np.float32)
        partial = q @ columns[:-1]  # −2 q·m, chunk × M
        partial += columns[-1]  # + ‖m‖²: ‖q − m‖² less ‖q‖², the same for every m
        diff = q.astype(np.float64) - m[partial.argmin(axis=1)]
        out[i:i + len(q)] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def image_scores(memory: np.ndarray, rows: np.ndarray, per_image: int) -> np.ndarray:
    """Each image's score (the maximum patch distance) from its rows, `per_image` rows an image."""
    return nearest_distances(memory, rows).reshape(-1, per_image).max(axis=1)
