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
from edge_runtime.statistics import auroc, pearson, spearman


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


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else value


def compare(ref: Outputs, test: Outputs, data: EvalData, auroc_budget: float,
            min_map_correlation: float) -> AccuracyReport:
    """INT8 (`test`) against FP32 (`ref`) on the same images; the gate's verdict is in `passed`/`reasons`."""
    labels = data.labels()
    good = labels == 0
    thr = data.threshold if data.threshold is not None else threshold_from_good_scores(ref.scores[good]).value
    finite = bool(np.isfinite(test.maps).all() and np.isfinite(test.scores).all())
    a_ref = _defined(auroc(ref.scores, labels))
    a_test = _defined(auroc(test.scores, labels)) if finite else None
    drop = None if a_ref is None or a_test is None else a_ref - a_test
    bad = ~good
    rep = AccuracyReport(
        auroc_fp32=a_ref, auroc_int8=a_test, auroc_drop=drop,
        map_pearson=pearson(ref.maps, test.maps) if finite else float("nan"),
        score_spearman=spearman(ref.scores, test.scores) if finite else float("nan"),
        threshold=float(thr),
        false_reject_fp32=float(is_anomalous(ref.scores[good], thr).mean()),
        false_reject_int8=float(is_anomalous(test.scores[good], thr).mean()),
        false_accept_fp32=float((~is_anomalous(ref.scores[bad], thr)).mean()) if bad.any() else None,
        false_accept_int8=float((~is_anomalous(test.scores[bad], thr)).mean()) if bad.any() else None,
        n_good=int(good.sum()), n_anomalous=int(bad.sum()))
    if drop is not None and drop > auroc_budget:
        rep.reasons.append(f"AUROC drops by {drop:.4f} (> budget {auroc_budget:.4f})")
    if not finite:
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
