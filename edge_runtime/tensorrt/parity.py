"""Engine-vs-reference numbers for `benchmarks/trt_check`: map agreement, score ranking, verdicts, latency.
Statistics come from `edge_runtime.statistics`, the one home of ranks, correlations and percentiles."""

from __future__ import annotations

from typing import Union

import numpy as np

from edge_runtime.statistics import pearson, percentile, spearman


def max_abs_error(maps: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(maps, np.float64) - np.asarray(reference, np.float64))))


def map_correlation(maps: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation of all map pixels (the heat map's shape, whatever its offset)."""
    return float(pearson(np.asarray(maps, np.float64).ravel(), np.asarray(reference, np.float64).ravel()))


def score_rank_correlation(scores: np.ndarray, reference: np.ndarray) -> float:
    return float(spearman(scores, reference))


def verdict_agreement(scores: np.ndarray, threshold: float, reference: np.ndarray,
                      reference_threshold: float) -> float:
    """Share of frames judged alike (NG = score above its own model's threshold)."""
    a = np.asarray(scores, np.float64) > threshold
    b = np.asarray(reference, np.float64) > reference_threshold
    return float(np.mean(a == b)) if a.size else float("nan")


def latency_ms(seconds: Union[list[float], np.ndarray]) -> dict[str, float]:
    """p50/p90/p99 in milliseconds; percentiles on numpy's 0–100 scale (never 0.99 for p99)."""
    s = np.asarray(seconds, dtype=np.float64) * 1e3
    if s.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p99 = (percentile(s, q) for q in (50, 90, 99))
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(s.mean()),
            "n": int(s.size)}
