"""Engine-vs-reference numbers for `benchmarks/trt_check`: map error, score ranking, latency percentiles."""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank (what Spearman's rho needs)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, x.size + 1):
        if end == x.size or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two score lists: does the engine order images as the reference does?"""
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.size != rb.size:
        raise ValueError(f"score lists differ in length: {ra.size} vs {rb.size}")
    if ra.size < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def max_abs_error(maps: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(maps, np.float64) - np.asarray(reference, np.float64))))


def latency_ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99 in milliseconds; percentiles on numpy's 0–100 scale (never 0.99 for p99)."""
    s = np.asarray(seconds, dtype=np.float64) * 1e3
    if s.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p99 = np.percentile(s, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(s.mean()),
            "n": int(s.size)}
