"""The one definition of the image score, the threshold rule and the verdict.

Score = mean of the top-k anomaly-map values (k = 100, as the SLSG reference). The threshold is a
quantile of good-image scores chosen for a target false-reject rate on good images — what a factory
with no defect samples can set. Training, evaluation, export and the runtime all import this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from edge_runtime.statistics import quantile

TOP_K = 100
SCORE_DEFINITION = {"kind": "mean_topk", "k": TOP_K, "map": "softmax(logits)[1]"}
#: Quantiles of good scores kept beside every threshold, so it can be re-chosen later without data.
REPORTED_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0)
#: The threshold is read from an exponential tail fitted to this top share of the good scores …
TAIL_FRACTION = 0.2
#: … when it holds at least this many scores (fewer: the plain quantile).
MIN_TAIL = 5


def image_score(maps: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Mean of the k largest values of each map; maps are N×H×W or N×1×H×W (or one H×W map)."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 2:
        m = m[None]
    flat = m.reshape(m.shape[0], -1)
    k = min(k, flat.shape[1])
    top = np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1, dtype=np.float64).astype(np.float32)


@dataclass
class Threshold:
    """A decision threshold and the good-score evidence behind it."""

    value: float
    false_reject_rate: float
    n_good: int
    quantiles: dict[str, float] = field(default_factory=dict)
    method: str = "quantile"  # how `value` was read from the good scores: "exponential tail" or "quantile"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Threshold:
        return cls(float(d["value"]), float(d["false_reject_rate"]), int(d["n_good"]),
                   {str(k): float(v) for k, v in d.get("quantiles", {}).items()}, str(d.get("method", "quantile")))


def tail_quantile(scores: np.ndarray, q: float) -> float | None:
    """The q-quantile of good scores read from an exponential tail fitted to their top `TAIL_FRACTION` (peaks over
    a threshold: u = the score below the top k, σ = their mean excess over u, value = u + σ·ln((k/n)/(1 − q))), or
    None where that tail holds fewer than `MIN_TAIL` scores or q lies inside it.

    A 1 % quantile of a hundred good images is their largest one or two, so the false-reject rate a line gets
    swings with which images happened to be the validation ones. The tail fit rests on the top twenty: measured on
    1000 good images of the synthetic set, thresholds set from 400 random draws of 100 of them gave a false-reject
    rate on all 1000 within 0.5–2 % for 85 % of the draws (the plain quantile: 57 %), and never above 5 % (3 %)."""
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = s.size
    k = int(round(TAIL_FRACTION * n))
    if k < MIN_TAIL or k >= n or not 1.0 - q < k / n:
        return None
    u = s[n - k - 1]
    sigma = float(np.mean(s[n - k:] - u))
    return float(u + sigma * np.log((k / n) / (1.0 - q)))


def threshold_from_good_scores(scores: np.ndarray, false_reject_rate: float = 0.01) -> Threshold:
    """Threshold = the (1 − FRR) quantile of good scores: from their fitted exponential tail (`tail_quantile`) where
    there are enough of them, else the plain quantile (linear interpolation, numpy's default)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no good-image scores to set a threshold from: give at least one validation image")
    if not 0.0 <= false_reject_rate < 1.0:
        raise ValueError(f"false-reject rate must be in [0, 1), got {false_reject_rate}")
    tail = tail_quantile(s, 1.0 - false_reject_rate) if false_reject_rate > 0 else None
    value = tail if tail is not None else quantile(s, 1.0 - false_reject_rate)
    quantiles = {f"{q:g}": quantile(s, q) for q in REPORTED_QUANTILES}
    return Threshold(value=value, false_reject_rate=false_reject_rate, n_good=int(s.size), quantiles=quantiles,
                     method="exponential tail" if tail is not None else "quantile")


def score_map(reference: np.ndarray, own: np.ndarray) -> tuple[float, float, float]:
    """(slope, offset, r): own ≈ offset + slope · reference for one model's scores against another's on the same good
    images, by the standardised major axis (slope = σ_own / σ_ref: a tail maps to a tail); r ≤ 0 means no usable map
    (fewer than 3 images, no spread, or scores that do not rise together)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    y = np.asarray(own, dtype=np.float64).ravel()
    if ref.shape != y.shape:
        raise ValueError(f"mapping scores needs the same images' scores, got {ref.size} and {y.size}")
    usable = ref.size >= 3 and ref.std() > 0 and y.std() > 0
    r = float(np.corrcoef(ref, y)[0, 1]) if usable else 0.0
    if not r > 0:
        return 1.0, 0.0, r
    slope = float(y.std() / ref.std())
    return slope, float(y.mean() - slope * ref.mean()), r


def transferred_threshold(t: Threshold, reference: np.ndarray, own: np.ndarray) -> tuple[Threshold, dict]:
    """`t`, set on a large good reference, carried to a model whose scores on some of those good images are `own`
    where the reference model's are `reference` (e.g. INT8 against FP32 on the validation images).

    The map matches the two score distributions: own ≈ offset + slope · reference with slope = σ_own / σ_ref
    (the standardised major axis), so a precision that shifts or stretches the scores moves its threshold with
    them and a tail maps to a tail, while the tail estimate stays the reference's (a quantile of a few dozen
    images of its own is close to their maximum). A least-squares line would shrink the slope by the scores'
    correlation and pull the threshold into the good bulk (bottle's int8-u8, r 0.65: 2 of 20 held-out goods
    flagged instead of 0). Without a usable map (fewer than 3 images, no spread, or scores that
    do not rise together) the threshold is the model's own quantile and the record says so.
    """
    y = np.asarray(own, dtype=np.float64).ravel()
    quantiles = {f"{q:g}": quantile(y, q) for q in REPORTED_QUANTILES}
    slope, offset, r = score_map(reference, own)
    if not r > 0:
        own_t = threshold_from_good_scores(y, t.false_reject_rate)
        return own_t, {"method": "own quantile", "n": int(y.size), "r": r}
    value = offset + slope * t.value
    record = {"method": "transferred", "from": t.value, "slope": slope, "offset": offset, "r": r, "n": int(y.size)}
    return Threshold(value=value, false_reject_rate=t.false_reject_rate, n_good=t.n_good, quantiles=quantiles,
                     method=t.method), record


def threshold_warning(t: Threshold) -> str | None:
    """A tail needs enough images to be read: with n good images, a rate below 1/n is an extrapolation (the
    exponential tail makes it a reasoned one, not a measured one)."""
    needed = math.ceil(1.0 / t.false_reject_rate) if t.false_reject_rate > 0 else None
    if needed is None or t.n_good >= needed:
        return None
    return (f"the threshold rests on {t.n_good} good validation images, but a {t.false_reject_rate:.1%} false-reject "
            f"rate needs at least {needed}: expect more false rejects on the line; add good validation images")


def effective_threshold(threshold: float, sensitivity: float = 1.0) -> float:
    """Sensitivity > 1 flags more (threshold divided by it); < 1 flags fewer."""
    if sensitivity <= 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity}")
    return threshold / sensitivity


def is_anomalous(score: float | np.ndarray, threshold: float, sensitivity: float = 1.0):
    """NG when the score exceeds the effective threshold."""
    return np.asarray(score) > effective_threshold(threshold, sensitivity)
