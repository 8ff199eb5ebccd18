"""The accuracy gate: does the INT8 model judge held-out images the way the FP32 model does?

Measured on held-out good images (and anomalies when the data has them): image AUROC and its drop, pixel
Pearson correlation of the maps, Spearman rank correlation of the scores, and false-reject / false-accept
rates at the bundle's threshold. Implemented in numpy so the gate needs nothing beyond the runtime's stack.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_runtime.scoring import is_anomalous, threshold_from_good_scores


@dataclass
class EvalData:
    """Held-out images prepared at the model size (uint8 BGR N×H×W×3); never the calibration images."""

    good: np.ndarray
    anomalous: np.ndarray | None = None
    threshold: float | None = None      # the bundle's threshold; None → 99th percentile of FP32 good scores

    def images(self) -> np.ndarray:
        return self.good if self.anomalous is None or len(self.anomalous) == 0 else \
            np.concatenate([self.good, self.anomalous])

    def labels(self) -> np.ndarray:
        n_bad = 0 if self.anomalous is None else len(self.anomalous)
        return np.concatenate([np.zeros(len(self.good), np.int8), np.ones(n_bad, np.int8)])


@dataclass
class Outputs:
    maps: np.ndarray     # N×H×W float32
    scores: np.ndarray   # N float32


@dataclass
class AccuracyReport:
    auroc_fp32: float | None
    auroc_int8: float | None
    auroc_drop: float | None
    map_pearson: float
    score_spearman: float
    threshold: float
    false_reject_fp32: float
    false_reject_int8: float
    false_accept_fp32: float | None
    false_accept_int8: float | None
    n_good: int
    n_anomalous: int
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def session(model: Path, threads: int = 0) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def run_model(model: Path | ort.InferenceSession, images: np.ndarray, batch_size: int = 8) -> Outputs:
    sess = model if isinstance(model, ort.InferenceSession) else session(model)
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:  # a static-batch export takes exactly that many frames
        batch_size = fixed
    maps, scores = [], []
    for i in range(0, len(images), batch_size):
        amap, score = sess.run(["anomaly_map", "score"], {name: images[i:i + batch_size]})
        maps.append(amap.reshape(amap.shape[0], *amap.shape[-2:]))
        scores.append(score.reshape(-1))
    return Outputs(np.concatenate(maps).astype(np.float32), np.concatenate(scores).astype(np.float32))


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    x = np.asarray(x, np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    r = np.empty(len(x), np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        r[order[s:e]] = (s + e + 1) / 2.0
    return r


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mann–Whitney AUROC; None when only one class is present."""
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    r = ranks(scores)
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel() - np.mean(a, dtype=np.float64)
    b = np.asarray(b, np.float64).ravel() - np.mean(b, dtype=np.float64)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    if denom == 0.0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float((a * b).sum() / denom)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(ranks(a), ranks(b))


def compare(ref: Outputs, test: Outputs, data: EvalData, auroc_budget: float,
            min_map_correlation: float) -> AccuracyReport:
    """INT8 (`test`) against FP32 (`ref`) on the same images; the gate's verdict is in `passed`/`reasons`."""
    labels = data.labels()
    good = labels == 0
    thr = data.threshold if data.threshold is not None else threshold_from_good_scores(ref.scores[good]).value
    a_ref, a_test = auroc(ref.scores, labels), auroc(test.scores, labels)
    drop = None if a_ref is None else a_ref - a_test
    bad = ~good
    rep = AccuracyReport(
        auroc_fp32=a_ref, auroc_int8=a_test, auroc_drop=drop,
        map_pearson=pearson(ref.maps, test.maps), score_spearman=spearman(ref.scores, test.scores),
        threshold=float(thr),
        false_reject_fp32=float(is_anomalous(ref.scores[good], thr).mean()),
        false_reject_int8=float(is_anomalous(test.scores[good], thr).mean()),
        false_accept_fp32=float((~is_anomalous(ref.scores[bad], thr)).mean()) if bad.any() else None,
        false_accept_int8=float((~is_anomalous(test.scores[bad], thr)).mean()) if bad.any() else None,
        n_good=int(good.sum()), n_anomalous=int(bad.sum()))
    if drop is not None and drop > auroc_budget:
        rep.reasons.append(f"AUROC drops by {drop:.4f} (> budget {auroc_budget:.4f})")
    if not (np.isfinite(test.maps).all() and np.isfinite(test.scores).all()):
        rep.reasons.append("the quantised model outputs NaN/inf")
    if not rep.map_pearson >= min_map_correlation:  # NaN correlation fails too
        rep.reasons.append(f"anomaly-map correlation {rep.map_pearson:.4f} < {min_map_correlation:.4f}")
    rep.passed = not rep.reasons
    return rep


def latency_ms(model: Path, image: np.ndarray, runs: int = 10, threads: int = 0) -> float:
    """Median wall time of one batch-1 inference after two warm-up runs (CPU, ONNX Runtime)."""
    sess = session(model, threads)
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
