"""Engine-vs-reference numbers for `benchmarks/trt_check`: map error, score ranking, latency percentiles."""

from __future__ import annotations

import numpy as np

from edge_runtime.statistics import percentile, rankdata, spearman  # noqa: F401  (re-exported)


def max_abs_error(maps: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(maps, np.float64) - np.asarray(reference, np.float64))))


def latency_ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99 in milliseconds; percentiles on numpy's 0–100 scale (never 0.99 for p99)."""
    s = np.asarray(seconds, dtype=np.float64) * 1e3
    if s.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p99 = (percentile(s, q) for q in (50, 90, 99))
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(s.mean()),
            "n": int(s.size)}
