"""The one home of every statistic the project reports: ranks, AUROC, correlations, percentiles, bootstrap.

numpy only, so training, evaluation, calibration, the TensorRT parity check, the runtime and the benchmarks
all import the same code (it sits at the bottom of the dependency arrows).

The degenerate-input rule, the same for every function here: a statistic that is *undefined* for its input
(AUROC with one class only, a correlation of a constant series, fewer than two values) is ``nan`` — never an
exception and never a made-up 0 or 1. Input that is *wrong* (lengths that differ, NaN among the scores, a
percentile outside [0, 100]) raises ValueError naming the problem. Display code prints ``nan`` as "–".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Callable, Optional, Sequence, Union  # noqa: UP035 — evaluated at run time on Python 3.8

import numpy as np

ArrayLike = Union[np.ndarray, Sequence[float]]
NAN = float("nan")


def _vector(x: ArrayLike, what: str = "values") -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).ravel()
    if np.isnan(v).any():
        raise ValueError(f"{what} contain NaN: the model or its input is broken")
    return v


#: Values per slice where a statistic walks a long series in pieces (8 MB of float64 each).
_SLICE = 1 << 20


def _flat(x: ArrayLike) -> np.ndarray:
    """`x` as one flat float array, a view where it already is one (no float64 copy of a long series)."""
    v = np.asarray(x)
    if v.dtype.kind != "f":
        v = v.astype(np.float64)
    return v.reshape(-1)


def _mean(v: np.ndarray, what: str) -> float:
    """The mean in float64; a NaN anywhere raises (the same rule as `_vector`)."""
    total = float(np.sum(v, dtype=np.float64))
    if math.isnan(total) and any(np.isnan(v[i:i + _SLICE]).any() for i in range(0, v.size, _SLICE)):
        raise ValueError(f"{what} contain NaN: the model or its input is broken")
    return total / v.size


def _pair(a: ArrayLike, b: ArrayLike) -> tuple:
    x, y = _vector(a, "first series"), _vector(b, "second series")
    if x.size != y.size:
        raise ValueError(f"series differ in length: {x.size} vs {y.size}")
    return x, y


def rankdata(x: ArrayLike) -> np.ndarray:
    """Ranks 1..n with ties sharing their mean rank (scipy.stats.rankdata's "average" method)."""
    v = _vector(x)
    order = np.argsort(v, kind="mergesort")
    ordered = v[order]
    starts_mask = np.r_[True, ordered[1:] != ordered[:-1]] if v.size else np.zeros(0, bool)
    starts = np.flatnonzero(starts_mask)
    ends = np.r_[starts[1:], ordered.size]
    mid = (starts + 1 + ends) / 2.0
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = mid[np.cumsum(starts_mask) - 1]
    return ranks


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact AUROC: Mann–Whitney U with mid-ranks for ties (sklearn's roc_auc_score); nan with one class."""
    s = _vector(scores, "scores")
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    u = rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pearson(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation; nan when either series is constant or shorter than two.

    Two passes over the series in slices (means, then centred products, each in float64): a gate compares maps of
    ~20 M pixels, and whole-array float64 copies of them cost seconds where the slices cost tens of milliseconds."""
    x, y = _flat(a), _flat(b)
    if x.size != y.size:
        raise ValueError(f"series differ in length: {x.size} vs {y.size}")
    if x.size < 2:
        return NAN
    mx, my = _mean(x, "first series"), _mean(y, "second series")
    if not (math.isfinite(mx) and math.isfinite(my)) or x.min() == x.max() or y.min() == y.max():
        return NAN
    sxy = sxx = syy = 0.0
    for i in range(0, x.size, _SLICE):
        u = x[i:i + _SLICE].astype(np.float64) - mx
        v = y[i:i + _SLICE].astype(np.float64) - my
        sxy, sxx, syy = sxy + float(u @ v), sxx + float(u @ u), syy + float(v @ v)
    return float(np.clip(sxy / math.sqrt(sxx * syy), -1.0, 1.0))


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman's rank correlation (Pearson of average ranks, scipy.stats.spearmanr); nan when constant."""
    x, y = _pair(a, b)
    return pearson(rankdata(x), rankdata(y)) if x.size >= 2 else NAN


def percentile(values: ArrayLike, q: float) -> float:
    """q in percent (99 → p99), numpy's default linear rule; nan for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside [0, 100] (99 means p99, not 0.99)")
    v = _vector(values)
    return float(np.percentile(v, q)) if v.size else NAN


def quantile(values: ArrayLike, q: float) -> float:
    """q in [0, 1]: `percentile(values, 100 q)`, the same rule (thresholds are quantiles of good scores)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    return percentile(values, 100.0 * q)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided bootstrap percentile interval (`level`, e.g. 0.95)."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero: the difference is significant."""
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    strata: Optional[np.ndarray] = None,
) -> Interval:
    """Percentile bootstrap of `statistic(indices)` over `n` paired samples.

    `strata` (e.g. labels) resamples within each group, so every resample keeps both classes and an AUROC
    stays defined. Resamples where the statistic is nan are left out of the interval.
    """
    if n < 1:
        return Interval(NAN, NAN, NAN, level, 0)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == g) for g in np.unique(strata)]
    estimate = float(statistic(np.arange(n)))
    draws = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        draws[b] = statistic(idx)
    return _percentile_interval(estimate, draws, level)


def _percentile_interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    """The central `level` of the resamples' statistics (nan resamples left out)."""
    draws = draws[~np.isnan(draws)]
    if not draws.size:
        return Interval(estimate, NAN, NAN, level, 0)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Interval(estimate, float(low), float(high), level, int(draws.size))


def paired_auroc_difference(
    reference: ArrayLike, candidate: ArrayLike, labels: ArrayLike, n_boot: int = 2000, level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """AUROC(reference) − AUROC(candidate) on the same images, with a paired, class-stratified bootstrap
    interval: the drop a quantised model costs, and whether it is more than the noise of ~100 images."""
    r, c = _pair(reference, candidate)
    y = np.asarray(labels).astype(bool).ravel()
    if y.size != r.size:
        raise ValueError(f"{r.size} scores but {y.size} labels")
    neg, pos = np.flatnonzero(~y), np.flatnonzero(y)
    if not neg.size or not pos.size:
        return bootstrap(lambda i: auroc(r[i], y[i]) - auroc(c[i], y[i]), r.size, n_boot, level, seed, strata=y)
    # A resample's AUROC is Σ m_p·m_n·[pos beats neg] / (P·N) over the draws' multiplicities, so every resample is
    # one product with the pairs' outcomes (what `bootstrap` with these strata computes, the same draws, ~5× faster).
    wins = _pairs_won(r[pos], r[neg]) - _pairs_won(c[pos], c[neg])
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):  # the draws `bootstrap` makes: the negatives first (np.unique's order), then the positives
        m_neg = np.bincount(rng.integers(0, neg.size, neg.size), minlength=neg.size)
        m_pos = np.bincount(rng.integers(0, pos.size, pos.size), minlength=pos.size)
        draws[b] = float(m_pos @ wins @ m_neg)
    return _percentile_interval(float(wins.mean()), draws / (pos.size * neg.size), level)


def _pairs_won(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """P×N: 1 where the positive scores above the negative, ½ on a tie, 0 below (the Mann–Whitney count)."""
    d = pos[:, None] - neg[None, :]
    return (d > 0).astype(np.float64) + 0.5 * (d == 0)


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate k/n (a false-reject rate on n good images): unlike k/n ± 1.96·se it stays
    inside [0, 1] and is not empty at k = 0, which is the common case on good images."""
    if n <= 0:
        return (NAN, NAN)

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if k == 0 else max(0.0, float(centre - half))  # exactly 0 at k = 0 (the formula leaves rounding)
    high = 1.0 if k == n else min(1.0, float(centre + half))
    return (low, high)


@dataclass(frozen=True)
class ScoreShift:
    """Do new good images score like the good images a threshold was set on? AUROC = P(new > reference): 0.5 when
    alike, with its bootstrap interval (each group resampled on its own).

    A threshold set on one session's good images gives the asked false-reject rate on good images *of that
    session*; on good images of another (other light, another position, a new batch) the measured rate says how
    far that session is from the reference one, not how well the threshold was chosen."""

    auroc: float
    low: float
    high: float
    n_reference: int
    n_new: int

    @property
    def shifted(self) -> bool:
        return bool(self.low > 0.5)

    def to_dict(self) -> dict:
        return {**asdict(self), "shifted": self.shifted}

    def describe(self) -> str:
        return f"AUROC {self.auroc:.2f}, 95 % {self.low:.2f}…{self.high:.2f}; 0.5 = alike"


def score_shift(reference: ArrayLike, new: ArrayLike, seed: int = 0) -> ScoreShift:
    """How far `new` good scores sit above the `reference` good scores."""
    ref, new = np.asarray(reference, np.float64).ravel(), np.asarray(new, np.float64).ravel()
    scores = np.concatenate([ref, new])
    labels = np.r_[np.zeros(ref.size), np.ones(new.size)]
    interval = bootstrap(lambda i: auroc(scores[i], labels[i]), scores.size, seed=seed, strata=labels)
    return ScoreShift(interval.estimate, interval.low, interval.high, int(ref.size), int(new.size))
