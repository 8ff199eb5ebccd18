"""Refit on the line: what the operator confirmed becomes a new bundle version, only through a gate. No torch.

1. **Statistics.** Every model file's fitted heads (the global Gaussian, the local patch memory) take in the
   confirmed-good frames as that file computes them (`teach.heads`), so parts that look like them — the new light,
   the new supplier's colour — stop looking unusual. The heads' normalisation in the fused score stays: it was set on
   validation images, and a handful of frames the heads have now seen cannot set it honestly.
2. **Thresholds.** For every model file the line could run (each ONNX Runtime file, and each file OpenVINO was gated
   to run, with its own threshold, as `slsg-edge threshold` does), the confirmed frames are scored by the candidate
   and the threshold is set to pass every confirmed-good one (and their false-reject-rate quantile where there are
   enough of them to read a tail) — never below the threshold the version had: a handful of frames may relax a
   threshold the line proved too tight, but never tighten one set on hundreds of validation images.
3. **The gate.** The candidate is accepted only when, for every model, every confirmed defect is still flagged and
   no more confirmed-good frames are flagged than before; otherwise it is refused with the reasons and removed
   (it never ran). An accepted candidate is a complete, hashed version beside the previous ones
   (`LineStore.new_version`); the caller decides when it becomes current.

Every refit, accepted or refused, is in the audit log with the frames, thresholds and scores before and after.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edge_runtime.backends.base import model_of
from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.manifest import Manifest, read_manifest, write_manifest
from edge_runtime.preprocess import FrameError, prepare
from edge_runtime.rethreshold import open_backends, score_frames
from edge_runtime.scoring import Threshold, threshold_from_good_scores
from edge_runtime.teach.heads import head_updates, write_updates
from edge_runtime.teach.store import DEFECT, GOOD, LineStore, TeachError

DEFAULT_RATE = 0.01


@dataclass
class ModelRefit:
    """One model file's side of a refit: its scores and threshold before and after, and what the gate counted."""

    model: str
    backend: str
    old: float
    new: float
    good_before: list[float]
    good_after: list[float]
    defect_before: list[float]
    defect_after: list[float]

    @property
    def goods_flagged_before(self) -> int:
        return sum(s > self.old for s in self.good_before)

    @property
    def goods_flagged_after(self) -> int:
        return sum(s > self.new for s in self.good_after)

    @property
    def defects_caught_before(self) -> int:
        return sum(s > self.old for s in self.defect_before)

    @property
    def defects_caught_after(self) -> int:
        return sum(s > self.new for s in self.defect_after)

    def problems(self) -> list[str]:
        out = []
        missed = len(self.defect_after) - self.defects_caught_after
        if missed:
            out.append(f"{self.model}: {missed} confirmed defect(s) would no longer be flagged (lowest defect score "
                       f"{min(self.defect_after):.4g}, new threshold {self.new:.4g})")
        if self.goods_flagged_after > self.goods_flagged_before:
            out.append(f"{self.model}: {self.goods_flagged_after} confirmed-good frames would be flagged, "
                       f"{self.goods_flagged_before} before")
        return out

    def record(self) -> dict:
        return {**asdict(self), "goods_flagged_before": self.goods_flagged_before,
                "goods_flagged_after": self.goods_flagged_after, "defects_caught_before": self.defects_caught_before,
                "defects_caught_after": self.defects_caught_after}


@dataclass
class RefitReport:
    """What a refit did: accepted (with its new version) or refused (with every reason)."""

    accepted: bool
    parent: int
    goods: list[str]
    defects: list[str]
    models: list[ModelRefit] = field(default_factory=list)
    heads: list[dict] = field(default_factory=list)   # each file whose head statistics changed, and how
    notes: list[str] = field(default_factory=list)    # what could not be refitted here
    reasons: list[str] = field(default_factory=list)
    version: Optional[int] = None
    wall_s: float = 0.0

    def summary(self) -> str:
        if not self.accepted:
            return "refit refused: " + "; ".join(self.reasons)
        return (f"version {self.version} made from version {self.parent} with {len(self.goods)} confirmed-good and "
                f"{len(self.defects)} confirmed-defect frames")

    def record(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "models"}
        return {**out, "models": [m.record() for m in self.models], "summary": self.summary()}


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


def new_threshold(old: Threshold, good: np.ndarray) -> Threshold:
    """Pass every confirmed-good frame (and their tail quantile where there are enough), never below `old`."""
    rate = old.false_reject_rate if old.false_reject_rate > 0 else DEFAULT_RATE
    line = threshold_from_good_scores(good, rate)
    value = max(old.value, line.value, float(good.max()))  # a frame the operator called good is not rejected again
    return Threshold(value, rate, old.n_good + int(good.size), line.quantiles,
                     "kept" if value == old.value else f"line refit ({line.method})")


def _scores(bundle: Bundle, goods: np.ndarray, defects: np.ndarray, threads: Optional[int]) -> dict:
    """model key → (backend name, good scores, defect scores) for every model file the line could run."""
    return {model_of(b): (b.name, score_frames(b, goods), score_frames(b, defects))
            for b in open_backends(bundle, ["all"], threads)}


def _set_thresholds(root: Path, thresholds: dict[str, Threshold], source: str) -> Manifest:
    """Into a version just made (and verified by `new_version`); verified once more after the rewrite."""
    manifest = read_manifest(root)
    for model, t in thresholds.items():
        manifest.set_threshold(model, {**t.to_dict(), "source": source})
    out = write_manifest(root, manifest, rehash=False)
    load_bundle(root)
    return out


def refit(store: LineStore, who: str, threads: Optional[int] = None, heads: bool = True) -> RefitReport:
    """Refit the current version on the confirmed frames; returns the report (accepted: a new version exists).
    `heads=False` leaves the heads' statistics as they are and sets thresholds only."""
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
    bundle = store.open_current()
    good_frames, defect_frames = _frames(goods, bundle.size), _frames(defects, bundle.size)
    before = _scores(bundle, good_frames, defect_frames, threads)
    updates, report.notes = head_updates(bundle, good_frames) if heads else ([], [])
    report.heads = [{"file": u.target, **u.record} for u in updates]

    def edit(folder: Path, manifest: Manifest) -> Manifest:
        write_updates(folder, updates)
        fp32 = next((u for u in updates if u.target == manifest.models.get("fp32")), None)
        norms = manifest.scores.get("score", {}).get("norms", {})
        for name, change in (fp32.record.get("norms", {}) if fp32 else {}).items():
            if name in norms:  # what the heatmap reads to put a head's map on SLSG's scale
                norms[name] = {**norms[name], "scale": change["scale_after"], "relaxed_on_the_line": True}
        return manifest

    version = store.new_version(parent, edit, {"by": who, "why": "refit", "goods": report.goods,
                                               "defects": report.defects})
    thresholds = {}
    candidate = Bundle(version.path, read_manifest(version.path))  # verified as `new_version` made it
    for key, (backend, good, defect) in _scores(candidate, good_frames, defect_frames, threads).items():
        old = bundle.threshold_for(key)
        new = new_threshold(old, good)
        _, good_before, defect_before = before.get(key, (backend, good, defect))
        result = ModelRefit(key, backend, old.value, new.value, [float(x) for x in good_before],
                            [float(x) for x in good], [float(x) for x in defect_before], [float(x) for x in defect])
        report.models.append(result)
        report.reasons += result.problems()
        thresholds[key] = new
    report.accepted = not report.reasons
    if report.accepted:
        _set_thresholds(version.path, thresholds, f"line refit by {who} on {len(goods)} confirmed-good frames")
        report.version = version.number
    else:
        shutil.rmtree(version.path)  # never current, never run: nothing refers to it
    return _finish(store, who, report, t0)


def _finish(store: LineStore, who: str, report: RefitReport, t0: float) -> RefitReport:
    report.wall_s = time.perf_counter() - t0
    store.audit(who, "refit" if report.accepted else "refit_refused", {
        "parent": report.parent, "version": report.version, "goods": report.goods, "defects": report.defects,
        "reasons": report.reasons, "notes": report.notes, "heads": report.heads, "wall_s": round(report.wall_s, 3),
        "models": [{"model": m.model, "threshold_before": m.old, "threshold_after": m.new,
                    "good_scores_before": m.good_before, "good_scores_after": m.good_after,
                    "defect_scores_before": m.defect_before, "defect_scores_after": m.defect_after}
                   for m in report.models],
    })
    return report
