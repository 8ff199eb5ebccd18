"""Exact threshold curves over more pixels than fit in memory.

A pixel-level curve (ROC or sPRO-vs-FPR) is a pair of cumulative sums taken over pixels ordered by score.
Sorting all test pixels of a category at native resolution (MVTec LOCO: ~1e9) is not memory-sane, so the
curves are built from histograms over *float32 order keys* (the float's bits mapped to an unsigned
integer that sorts like the value) and refined where it matters:

- pass 1 bins every pixel by the top 16 key bits (65,536 cells);
- each later pass splits the cells that carry the largest error bound 256-way (8 more key bits);
- after 3 passes a split cell holds a single float32 value, so its curve points are exact.

Between two neighbouring cell boundaries the true curve is a monotone staircase inside the rectangle the
boundaries span, so the trapezoid through the boundaries differs from the trapezoid through every distinct
threshold by at most ½·ΔFPR·ΔTPR per cell (and (limit − FPR₀)·ΔTPR in the cell the limit cuts). That sum
is the reported error bound; a cell with one value (or no negatives, or no positives) contributes nothing.
Scores are compared at float32 precision, the precision the anomaly maps have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: key bits dropped at each refinement level: cells hold 2**16, 2**8, then 1 float32 value(s)
LEVEL_SHIFTS = (16, 8, 0)
N_LEVEL0 = 1 << (32 - LEVEL_SHIFTS[0])


def order_keys(values: np.ndarray) -> np.ndarray:
    """float32 values → uint32 keys with the same order (−0.0 and +0.0 share one key); NaN is refused."""
    v = np.asarray(values, dtype=np.float32).ravel() + np.float32(0.0)
    if np.isnan(v).any():
        raise ValueError(
            "anomaly scores contain NaN: the model or its input is broken; fix it before evaluating"
        )
    bits = v.view(np.uint32)
    return np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


@dataclass
class CurvePoints:
    """Boundary points of a curve from its highest-score cell down, with (0, 0) first."""

    fpr: np.ndarray
    tpr: np.ndarray
    exact: np.ndarray  # per segment: True when the cell behind it holds one value (no error)


def area_up_to(points: CurvePoints, limit: float) -> tuple[float, float]:
    """(trapezoid area under tpr over fpr ∈ [0, limit], divided by limit; its error bound, same units)."""
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"FPR limit must be in (0, 1], got {limit}")
    f, t, exact = points.fpr, points.tpr, points.exact
    df, dt = np.diff(f), np.diff(t)
    full = f[1:] <= limit
    area = float(np.sum(0.5 * df[full] * (t[1:][full] + t[:-1][full])))
    loose = full & ~exact
    bound = float(np.sum(0.5 * df[loose] * dt[loose]))
    cut = np.flatnonzero(~full)
    if cut.size:
        k = int(cut[0])
        f0, f1, t0, t1 = f[k], f[k + 1], t[k], t[k + 1]
        if limit > f0:
            t_lim = t0 + (t1 - t0) * (limit - f0) / (f1 - f0)
            area += 0.5 * (limit - f0) * (t0 + t_lim)
            if not exact[k]:
                bound += (limit - f0) * (t1 - t0)
    return float(area / limit), float(bound / limit)


def segment_bounds(points: CurvePoints, limit: float) -> np.ndarray:
    """Per-segment share of the error bound of `area_up_to(points, limit)` (already divided by limit)."""
    f, t = points.fpr, points.tpr
    df, dt = np.diff(f), np.diff(t)
    out = np.where(f[1:] <= limit, 0.5 * df * dt, np.where(f[:-1] < limit, (limit - f[:-1]) * dt, 0.0))
    out[points.exact] = 0.0
    return out / limit


class KeyHistogram:
    """Weighted counts per key cell in several channels; channel 0 holds the negatives (defect-free pixels).

    Level 0 is a dense array; finer levels are sorted cell ids with a (channels × cells) weight matrix. A
    split cell is removed from its level and its children are merged into a finer one.
    """

    def __init__(self, channels: int):
        self.channels = channels
        self.level0 = np.zeros((channels, N_LEVEL0), dtype=np.float64)
        self.finer: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # level → (cell ids, weights C×n)

    def add(self, channel: int, keys: np.ndarray, weights: np.ndarray | float = 1.0) -> None:
        """Pass 1: count keys into the level-0 cells."""
        if keys.size == 0:
            return
        w = None if np.isscalar(weights) and weights == 1.0 else np.broadcast_to(weights, keys.shape)
        self.level0[channel] += np.bincount(keys >> LEVEL_SHIFTS[0], weights=w, minlength=N_LEVEL0)

    def remove(self, level: int, ids: np.ndarray) -> None:
        """Drop cells that are being split (their children arrive through `merge`)."""
        if level == 0:
            self.level0[:, np.asarray(ids, dtype=np.int64)] = 0.0
        elif level in self.finer:
            cid, w = self.finer[level]
            keep = ~np.isin(cid, np.asarray(ids, dtype=np.uint64))
            self.finer[level] = (cid[keep], w[:, keep])

    def merge(self, level: int, ids: np.ndarray, weights: np.ndarray) -> None:
        """Add weights (C×n) of cells `ids` at a finer level."""
        if ids.size == 0:
            return
        old_ids, old_w = self.finer.get(level, (np.zeros(0, np.uint64), np.zeros((self.channels, 0))))
        uniq = np.unique(np.concatenate([old_ids, ids]))
        w = np.zeros((self.channels, uniq.size), dtype=np.float64)
        w[:, np.searchsorted(uniq, old_ids)] += old_w
        np.add.at(w.T, np.searchsorted(uniq, ids), weights.T)
        self.finer[level] = (uniq, w)

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(level, cell id, weights C×n) of every non-empty cell, highest scores first."""
        nz = np.flatnonzero(self.level0.any(axis=0))
        levels = [np.zeros(nz.size, dtype=np.int64)]
        ids = [nz.astype(np.uint64)]
        weights = [self.level0[:, nz]]
        for level, (cid, w) in sorted(self.finer.items()):
            levels.append(np.full(cid.size, level, dtype=np.int64))
            ids.append(cid.astype(np.uint64))
            weights.append(w)
        lv, cid, w = np.concatenate(levels), np.concatenate(ids), np.concatenate(weights, axis=1)
        shifts = np.asarray(LEVEL_SHIFTS, dtype=np.uint64)[lv]
        order = np.argsort(cid << shifts, kind="stable")[::-1]
        return lv[order], cid[order], w[:, order]

    def curve(self, channel: int, positive_total: float | None = None) -> CurvePoints | None:
        """Curve of channel `channel` (positives) against channel 0 (negatives); None when either is empty."""
        lv, _, w = self.cells()
        return _curve_from_cells(lv, w[0], w[channel], positive_total)

    def split_candidates(
        self, channel: int, limits: Sequence[float], positive_total: float | None, tolerance: float
    ) -> dict[tuple[int, int], float]:
        """(level, cell id) → bound share of the cells to split so each bound drops below tolerance/2."""
        lv, cid, w = self.cells()
        points = _curve_from_cells(lv, w[0], w[channel], positive_total)
        if points is None:
            return {}
        chosen: dict[tuple[int, int], float] = {}
        for limit in limits:
            share = segment_bounds(points, limit)
            remaining = float(share.sum())
            if remaining <= tolerance:
                continue
            for k in np.argsort(share)[::-1]:
                if remaining <= tolerance / 2 or share[k] == 0.0:
                    break
                key = (int(lv[k]), int(cid[k]))
                chosen[key] = max(chosen.get(key, 0.0), float(share[k]))
                remaining -= float(share[k])
        return chosen


def _curve_from_cells(
    levels: np.ndarray, neg: np.ndarray, pos: np.ndarray, positive_total: float | None
) -> CurvePoints | None:
    n_total = float(neg.sum())
    p_total = float(pos.sum()) if positive_total is None else positive_total
    if n_total <= 0 or p_total <= 0:
        return None
    fpr = np.concatenate([[0.0], np.cumsum(neg) / n_total])
    tpr = np.concatenate([[0.0], np.cumsum(pos) / p_total])
    exact = (levels == len(LEVEL_SHIFTS) - 1) | (neg == 0) | (pos == 0)
    return CurvePoints(np.minimum(fpr, 1.0), np.minimum(tpr, 1.0), exact)


#: largest dense accumulator (cells) a refinement pass uses before falling back to np.unique
DENSE_CHILD_CELLS = 1 << 22


def child_sums(
    keys: np.ndarray, weights: np.ndarray | float, parent_level: int, parents: np.ndarray, level: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum the weights of keys inside sorted `parents` (cells at parent_level) per cell at `level`."""
    parent_of = (keys >> np.uint32(LEVEL_SHIFTS[parent_level])).astype(np.uint64)
    slot = np.minimum(np.searchsorted(parents, parent_of), parents.size - 1)
    inside = parents[slot] == parent_of
    if not inside.any():
        return np.zeros(0, dtype=np.uint64), np.zeros(0)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), keys.shape)[inside]
    child = (keys[inside] >> np.uint32(LEVEL_SHIFTS[level])).astype(np.uint64)
    width = 1 << (LEVEL_SHIFTS[parent_level] - LEVEL_SHIFTS[level])
    if parents.size * width <= DENSE_CHILD_CELLS:
        offset = child - (
            parents[slot[inside]] << np.uint64(LEVEL_SHIFTS[parent_level] - LEVEL_SHIFTS[level])
        )
        local = slot[inside].astype(np.int64) * width + offset.astype(np.int64)
        sums = np.bincount(local, weights=w, minlength=parents.size * width)
        hit = np.flatnonzero(np.bincount(local, minlength=parents.size * width))
        ids = (parents[hit // width] << np.uint64(LEVEL_SHIFTS[parent_level] - LEVEL_SHIFTS[level])) + (
            hit % width
        ).astype(np.uint64)
        return ids, sums[hit]
    ids, inverse = np.unique(child, return_inverse=True)
    return ids, np.bincount(inverse, weights=w, minlength=ids.size)
