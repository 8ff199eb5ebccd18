"""The accuracy gate: does the INT8 (or FP16) model judge held-out images the way the FP32 model does?

Measured on held-out good images and anomalies: the image-AUROC drop with a paired, class-stratified
bootstrap interval on the gate's own images (`edge_runtime.statistics.paired_auroc_difference`), pixel
Pearson correlation of the maps, Spearman rank correlation of every score output, and false-reject /
false-accept rates. An AUROC measured on ~100 images moves by about a point between resamples, so a drop is
refused only when it is **significant** (the interval lies above zero) **and** above the budget; both numbers
are reported. Implemented in numpy so the gate needs nothing beyond the runtime's stack.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_runtime.backends.base import HEAD_PREFIX, SCORE_OUTPUT, Outputs, outputs_from_named
from edge_runtime.backends.onnxruntime_backend import cpu_session
from edge_runtime.backends.passes import pass_workers, run_batches, session_threads
from edge_runtime.scoring import is_anomalous, threshold_from_good_scores
from edge_runtime.statistics import auroc, paired_auroc_difference, pearson, spearman

#: Bootstrap resamples and level of the AUROC-drop interval.
N_BOOT = 2000
LEVEL = 0.95


@dataclass
class EvalData:
    """Held-out images prepared at the model size (uint8 BGR N×H×W×3); never the calibration images."""

    good: np.ndarray
    anomalous: np.ndarray | None = None
    threshold: float | None = None      # the bundle's threshold; None → 99th percentile of FP32 good scores
    anomalies_source: str = ""          # where the anomalies come from (test images, or synthetic), for the report

    def images(self) -> np.ndarray:
        return self.good if self.anomalous is None or len(self.anomalous) == 0 else \
            np.concatenate([self.good, self.anomalous])

    def labels(self) -> np.ndarray:
        n_bad = 0 if self.anomalous is None else len(self.anomalous)
        return np.concatenate([np.zeros(len(self.good), np.int8), np.ones(n_bad, np.int8)])


@dataclass
class AurocDrop:
    """AUROC(FP32) − AUROC(candidate) for one score output, with its bootstrap interval."""

    fp32: float | None
    candidate: float | None
    drop: float | None
    low: float | None
    high: float | None
    significant: bool       # the interval lies wholly above zero

    @classmethod
    def measure(cls, ref: np.ndarray, test: np.ndarray, labels: np.ndarray, seed: int = 0) -> AurocDrop:
        a_ref, a_test = _defined(auroc(ref, labels)), _defined(auroc(test, labels))
        if a_ref is None or a_test is None:
            return cls(a_ref, a_test, None, None, None, False)
        iv = paired_auroc_difference(ref, test, labels, n_boot=N_BOOT, level=LEVEL, seed=seed)
        low, high = _defined(iv.low), _defined(iv.high)
        return cls(a_ref, a_test, a_ref - a_test, low, high, low is not None and low > 0)


@dataclass
class AccuracyReport:
    auroc_fp32: float | None
    auroc_int8: float | None            # the candidate's (INT8 or FP16) AUROC of `score`
    auroc_drop: float | None
    auroc_drop_low: float | None        # the paired bootstrap interval of the drop (LEVEL, N_BOOT resamples)
    auroc_drop_high: float | None
    drop_significant: bool
    auroc_budget: float
    map_pearson: float
    score_spearman: float
    threshold: float
    false_reject_fp32: float
    false_reject_int8: float
    false_accept_fp32: float | None
    false_accept_int8: float | None
    n_good: int
    n_anomalous: int
    anomalies_source: str = ""
    heads: dict[str, dict] = field(default_factory=dict)   # score_<head> → AurocDrop + Spearman, reported only
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def drop_text(self) -> str:
        """"0.0104 (95 % interval −0.004…0.025)" — the drop and its noise, as printed and recorded."""
        if self.auroc_drop is None:
            return "– (no anomalies)"
        if self.auroc_drop_low is None:
            return f"{self.auroc_drop:+.4f}"
        return (f"{self.auroc_drop:+.4f} ({LEVEL:.0%} interval {self.auroc_drop_low:+.4f}…"
                f"{self.auroc_drop_high:+.4f})")


#: The gate's reason for a candidate whose outputs hold NaN or inf.
NON_FINITE = "the model outputs NaN/inf"


def run_model(model: Path | ort.InferenceSession, images: np.ndarray, batch_size: int = 8,
              as_written: bool = False) -> Outputs:
    """Every output of the model on `images`, as the runtime's `Outputs` (map, `score`, each `score_<head>`);
    `as_written` for a file ONNX Runtime runs as written (`onnxruntime_backend.AS_WRITTEN`). A file is run one
    batch per core at once (`edge_runtime.backends.passes`); a session the caller made runs as it was made."""
    workers = 1 if isinstance(model, ort.InferenceSession) else pass_workers()
    sess = model if isinstance(model, ort.InferenceSession) else cpu_session(model, session_threads(workers),
                                                                             as_written=as_written)
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:  # a static-batch export takes exactly that many frames
        batch_size = fixed
    names = [o.name for o in sess.get_outputs()]
    parts = []
    for batch, values in run_batches(lambda part: sess.run(names, {name: part}), images, batch_size, workers):
        named = dict(zip(names, values))
        parts.append(outputs_from_named(named, len(batch), named["anomaly_map"].shape[-2:]))
    return Outputs.concat(parts)


def run_backend(backend, images: np.ndarray, batch_size: int = 8) -> Outputs:
    """Every output of a runtime backend (any `edge_runtime.backends.Backend`, or a Predictor) on `images`."""
    return Outputs.concat([backend(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def score_outputs(out: Outputs) -> dict[str, np.ndarray]:
    """`score` and each `score_<head>` by graph output name."""
    return {SCORE_OUTPUT: out.score, **{HEAD_PREFIX + k: v for k, v in out.heads.items()}}


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else value


def _finite(out: Outputs) -> bool:
    return bool(np.isfinite(out.maps).all() and all(np.isfinite(v).all() for v in score_outputs(out).values()))


def _safe(stat, a: np.ndarray, b: np.ndarray) -> float:
    try:
        return stat(a, b)
    except ValueError:  # NaN among the values: reported as nan, the finiteness check refuses the model
        return float("nan")


def compare(ref: Outputs, test: Outputs, data: EvalData, auroc_budget: float,
            min_map_correlation: float) -> AccuracyReport:
    """The candidate (`test`) against FP32 (`ref`) on the same images; the verdict is in `passed`/`reasons`.

    Refused when the AUROC of `score` drops significantly (paired bootstrap interval above zero) *and* by more
    than `auroc_budget`; when the outputs are not finite; or when the maps correlate below
    `min_map_correlation`. The other score outputs (`score_<head>`) are measured the same way and reported."""
    labels = data.labels()
    good = labels == 0
    bad = ~good
    finite = _finite(test)
    thr = data.threshold if data.threshold is not None else threshold_from_good_scores(ref.score[good]).value
    drop = AurocDrop.measure(ref.score, test.score, labels) if finite else AurocDrop(None, None, None, None,
                                                                                     None, False)
    ref_scores, test_scores = score_outputs(ref), score_outputs(test)
    heads = {}
    for name in sorted(set(ref_scores) & set(test_scores) - {SCORE_OUTPUT}):
        d = AurocDrop.measure(ref_scores[name], test_scores[name], labels) if finite else None
        heads[name] = {**(asdict(d) if d else {}),
                       "spearman": _safe(spearman, ref_scores[name], test_scores[name])}
    rep = AccuracyReport(
        auroc_fp32=drop.fp32, auroc_int8=drop.candidate, auroc_drop=drop.drop, auroc_drop_low=drop.low,
        auroc_drop_high=drop.high, drop_significant=drop.significant, auroc_budget=auroc_budget,
        map_pearson=map_correlation(ref, test), score_spearman=_safe(spearman, ref.score, test.score),
        threshold=float(thr),
        false_reject_fp32=float(is_anomalous(ref.score[good], thr).mean()),
        false_reject_int8=float(is_anomalous(test.score[good], thr).mean()),
        false_accept_fp32=float((~is_anomalous(ref.score[bad], thr)).mean()) if bad.any() else None,
        false_accept_int8=float((~is_anomalous(test.score[bad], thr)).mean()) if bad.any() else None,
        n_good=int(good.sum()), n_anomalous=int(bad.sum()), anomalies_source=data.anomalies_source, heads=heads)
    if drop.drop is not None and drop.drop > auroc_budget and drop.significant:
        rep.reasons.append(f"AUROC drops by {rep.drop_text()}: significant and above the budget "
                           f"{auroc_budget:.4f}")
    if not finite:
        rep.reasons.append(NON_FINITE)
    map_reason = map_refusal(rep.map_pearson, min_map_correlation)
    if map_reason is not None:
        rep.reasons.append(map_reason)
    rep.passed = not rep.reasons
    return rep


def map_refusals(ref: Outputs, maps: np.ndarray, min_map_correlation: float) -> tuple[float, list[str]]:
    """(map r, the gate's reasons to refuse a candidate on its anomaly `maps` alone): NaN/inf in them, or maps that do
    not follow FP32's. The map is SLSG's and no fitted head changes it, so a file can be refused on it before any
    head is refitted for it; `compare` gives the same reasons, beside its rules on the scores."""
    r = _safe(pearson, ref.maps, maps)
    reasons = [] if np.isfinite(maps).all() else [NON_FINITE]
    why = map_refusal(r, min_map_correlation)
    return r, reasons + ([why] if why is not None else [])


def map_correlation(ref: Outputs, test: Outputs) -> float:
    """The gate's map statistic: Pearson's r of the candidate's anomaly maps against FP32's (NaN where undefined)."""
    return _safe(pearson, ref.maps, test.maps)


def map_refusal(map_pearson: float, min_map_correlation: float) -> str | None:
    """The gate's reason to refuse a candidate on its maps, or None (the map is SLSG's alone: no head changes it)."""
    if map_pearson >= min_map_correlation:  # NaN correlation fails too
        return None
    return f"anomaly-map correlation {map_pearson:.4f} < {min_map_correlation:.4f}"


def latency_ms(model: Path, image: np.ndarray, runs: int = 10, threads: int = 0, as_written: bool = False) -> float:
    """Median wall time of one batch-1 inference after two warm-up runs (CPU, ONNX Runtime, as the line runs it)."""
    sess = cpu_session(model, threads, as_written)
    name = sess.get_inputs()[0].name
    batch = image[None] if image.ndim == 3 else image[:1]
    for _ in range(2):
        sess.run(None, {name: batch})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: batch})
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))
