"""Refit on the line: what the operator confirmed becomes a new bundle version, only through a gate. No torch.

For every model file the line could run (each ONNX Runtime file, and each file OpenVINO was gated to run, with its
own threshold, as `slsg-edge threshold` does), the confirmed-good frames are scored with that model's own backend
and its threshold is set to pass every one of them (and to their false-reject-rate quantile where there are enough
of them to read a tail) — never below the threshold the version had: a handful of frames may relax a threshold the
line proved too tight, but never tighten one set on hundreds of validation images. The candidate is accepted only
when, for every model,

- every confirmed defect is still flagged, and
- the confirmed-good frames flagged are no more than before;

otherwise it is refused with the reasons and nothing changes. An accepted candidate is written as a new version
(`LineStore.new_version`: complete, hashed, the previous one kept); the caller decides when it becomes current.
Every refit, accepted or refused, is in the audit log with the frames, thresholds and scores before and after.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.manifest import Manifest
from edge_runtime.preprocess import FrameError, prepare
from edge_runtime.rethreshold import open_backends, score_frames
from edge_runtime.scoring import Threshold, threshold_from_good_scores
from edge_runtime.teach.store import DEFECT, GOOD, LineStore, TeachError

DEFAULT_RATE = 0.01


@dataclass
class ModelRefit:
    """One model file's side of a refit: its threshold before and after, and what the gate counted."""

    model: str
    backend: str
    old: float
    new: float
    good_scores: list[float]
    defect_scores: list[float]
    goods_flagged_before: int
    goods_flagged_after: int
    defects_caught_before: int
    defects_caught_after: int

    def problems(self) -> list[str]:
        out = []
        missed = len(self.defect_scores) - self.defects_caught_after
        if missed:
            worst = min(self.defect_scores)
            out.append(f"{self.model}: {missed} confirmed defect(s) would no longer be flagged (lowest defect score "
                       f"{worst:.4g}, new threshold {self.new:.4g})")
        if self.goods_flagged_after > self.goods_flagged_before:
            out.append(f"{self.model}: {self.goods_flagged_after} confirmed-good frames would be flagged, "
                       f"{self.goods_flagged_before} before")
        return out


@dataclass
class RefitReport:
    """What a refit did: accepted (with its new version) or refused (with every reason)."""

    accepted: bool
    parent: int
    goods: list[str]
    defects: list[str]
    models: list[ModelRefit] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    version: Optional[int] = None
    wall_s: float = 0.0

    def summary(self) -> str:
        if not self.accepted:
            return "refit refused: " + "; ".join(self.reasons)
        return (f"version {self.version} made from version {self.parent} with {len(self.goods)} confirmed-good and "
                f"{len(self.defects)} confirmed-defect frames")

    def record(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


def _frames(paths: list[Path], size) -> np.ndarray:
    out = []
    for p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if image is None:
            raise TeachError(f"confirmed frame {p} cannot be read: delete it or review the frame again")
        try:
            out.append(prepare(image, size))
        except FrameError as e:
            raise TeachError(f"confirmed frame {p}: {e}") from None
    return np.stack(out)


def result_key(backend) -> str:
    """The threshold key of the model a backend runs ("fp32", "int8", "openvino:int8", …)."""
    return getattr(backend, "model", "fp32")


def refit_model(backend, goods: np.ndarray, defects: np.ndarray, old: Threshold) -> tuple:
    """(ModelRefit, new Threshold) for one model file and its backend."""
    g, d = score_frames(backend, goods), score_frames(backend, defects)
    rate = old.false_reject_rate if old.false_reject_rate > 0 else DEFAULT_RATE
    line = threshold_from_good_scores(g, rate)
    value = max(old.value, line.value, float(g.max()))  # a frame the operator called good is not rejected again
    new = Threshold(value, rate, old.n_good + int(g.size), line.quantiles,
                    "kept" if value == old.value else f"line refit ({line.method})")
    result = ModelRefit(
        model=result_key(backend), backend=backend.name, old=old.value, new=value,
        good_scores=[float(x) for x in g], defect_scores=[float(x) for x in d],
        goods_flagged_before=int((g > old.value).sum()), goods_flagged_after=int((g > value).sum()),
        defects_caught_before=int((d > old.value).sum()), defects_caught_after=int((d > value).sum()),
    )
    return result, new


def _with_thresholds(thresholds: dict, source: str):
    def edit(_folder: Path, manifest: Manifest) -> Manifest:
        for model, t in thresholds.items():
            manifest.thresholds[model] = {**t.to_dict(), "source": source}
            if model == "fp32":
                manifest.threshold = manifest.thresholds["fp32"]
        return manifest

    return edit


def refit(store: LineStore, who: str, threads: Optional[int] = None) -> RefitReport:
    """Refit the current version on the confirmed frames; returns the report (accepted: a new version exists)."""
    t0 = time.perf_counter()
    parent = store.current
    goods, defects = store.confirmed(GOOD), store.confirmed(DEFECT)
    report = RefitReport(False, parent, [p.stem for p in goods], [p.stem for p in defects])
    if not goods:
        report.reasons.append("no confirmed-good frame: mark the false rejects as good first")
    if not defects:
        report.reasons.append("no confirmed defect: confirm at least one defect, so the gate can check that the new "
                              "version still catches it")
    if report.reasons:
        return _finish(store, who, report, t0)
    bundle: Bundle = store.open_current()
    good_frames, defect_frames = _frames(goods, bundle.size), _frames(defects, bundle.size)
    thresholds = {}
    for backend in open_backends(bundle, ["all"], threads):
        result, new = refit_model(backend, good_frames, defect_frames, bundle.threshold_for(result_key(backend)))
        report.models.append(result)
        report.reasons += result.problems()
        thresholds[result.model] = new
    report.accepted = not report.reasons
    if report.accepted:
        source = f"line refit by {who} on {len(goods)} confirmed-good frames"
        version = store.new_version(parent, _with_thresholds(thresholds, source),
                                    {"by": who, "why": "refit", "goods": report.goods, "defects": report.defects})
        report.version = version.number
    return _finish(store, who, report, t0)


def _finish(store: LineStore, who: str, report: RefitReport, t0: float) -> RefitReport:
    report.wall_s = time.perf_counter() - t0
    store.audit(who, "refit" if report.accepted else "refit_refused", {
        "parent": report.parent, "version": report.version, "goods": report.goods, "defects": report.defects,
        "reasons": report.reasons, "wall_s": round(report.wall_s, 3),
        "models": [{"model": m.model, "threshold_before": m.old, "threshold_after": m.new,
                    "good_scores": m.good_scores, "defect_scores": m.defect_scores} for m in report.models],
    })
    return report
