"""One threshold per model file, each carried from the RUN's threshold by that model's own scores on the same good
validation images.

An INT8 model ranks images almost as FP32 does (score ρ ≈ 0.95–0.99) but its scores sit a little higher or
lower, so FP32's threshold gives INT8 another false-reject rate on the line than the one asked for. The RUN's
threshold is an exponential-tail estimate over the validation images' decision scores
(`edge_runtime.scoring.tail_quantile`, `slsg.heads.scoring`), set once on the FP32 model that the heads were
normalised for. So each file's threshold is the RUN's, mapped from FP32's score distribution onto its own on the
same validation images (mean and spread matched: `edge_runtime.scoring.transferred_threshold`; FP32's maps to
itself); its good-score quantiles are its own.
The runtime picks the one for the model it runs (`edge_runtime.bundle.Bundle.threshold_for`). Held-out good
images (test/good), when the dataset has them, measure the false-reject rate each threshold really gives — a
check, not a choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from calibration.accuracy import run_backend, run_model
from calibration.bf16 import bf16_backend
from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN
from edge_runtime.backends.openvino_backend import OPENVINO_PREFIX, OpenVinoBackend
from edge_runtime.scoring import Threshold, is_anomalous, threshold_from_good_scores, transferred_threshold
from edge_runtime.statistics import score_shift
from export.job import ExportJob
from export.precisions import FILES
from export.run_data import load_samples, threshold_data

HELD_OUT_IMAGES = 200    # test/good images for the measured false-reject rates


@dataclass
class HeldOut:
    """The false-reject rate of one model at its own threshold on good images no threshold saw."""

    n: int
    false_rejects: int
    false_reject_rate: float
    asked_rate: float
    at_fp32_threshold: float | None = None   # the rate this model would give with FP32's threshold instead

    def to_dict(self) -> dict:
        return asdict(self)


def model_scores(model: Path, images: np.ndarray, precision: str = "fp32", head: Path | None = None) -> np.ndarray:
    """`score` (what the threshold applies to) of a bundle model on prepared images, in the arithmetic the runtime
    runs it in: ONNX Runtime for the model files (as written for `AS_WRITTEN`), OpenVINO bf16 for "bf16" (which is
    model.onnx), OpenVINO INT8 for "openvino:…"; each of the OpenVINO ones with the global `head` refitted for it."""

    if precision == "bf16":
        return run_backend(bf16_backend(model, head=head), images).score
    if precision.startswith(OPENVINO_PREFIX):  # an INT8 file as OpenVINO runs it (its own Q/DQ handling)
        return run_backend(OpenVinoBackend(model, precision="int8", model=precision, head=head), images).score

    return run_model(model, images, as_written=precision in AS_WRITTEN).score


def model_thresholds(root: Path, models: dict[str, str], images: np.ndarray, base: Threshold,
                     source: str, heads: dict[str, str] | None = None,
                     known: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """{precision: threshold record} for every model of the bundle at `root`: `base` (the RUN's threshold, in FP32's
    scores) carried to each model by its scores against FP32's on `images`. `heads`: the manifest's refitted heads;
    `known`: models' scores on `images` where the caller has them already (the others are run here)."""
    root, heads, known = Path(root), heads or {}, known or {}
    scores = {p: known[p] if p in known else model_scores(root / name, images, p, _head(root, heads, p))
              for p, name in models.items()}
    reference = scores.get("fp32")
    out = {}
    for precision, name in models.items():
        own = scores[precision]
        if reference is None:
            t, how = threshold_from_good_scores(own, base.false_reject_rate), {"method": "own quantile"}
        else:
            t, how = transferred_threshold(base, reference, own)
        out[precision] = {**t.to_dict(), "source": f"{name} ({precision}) scores on {source}", "transfer": how}
    return out


def _head(root: Path, heads: dict[str, str], precision: str) -> Path | None:
    return root / heads[precision] if precision in heads else None


def held_out_rate(model: Path, threshold: dict, images: np.ndarray, fp32_threshold: dict | None = None,
                  precision: str = "fp32", head: Path | None = None, scores: np.ndarray | None = None) -> HeldOut:
    t = Threshold.from_dict(threshold)
    scores = model_scores(model, images, precision, head) if scores is None else scores
    rejects = int(np.sum(is_anomalous(scores, t.value)))
    at_fp32 = None
    if fp32_threshold is not None:
        at_fp32 = float(np.mean(is_anomalous(scores, Threshold.from_dict(fp32_threshold).value)))
    return HeldOut(len(images), rejects, rejects / len(images), t.false_reject_rate, at_fp32)


def session_shift(validation: np.ndarray, held_out: np.ndarray, seed: int = 0) -> dict:
    """How far the held-out good scores sit above the validation good scores (the threshold's own images), as the
    manifest records it (`edge_runtime.statistics.score_shift`, with the way out when they do)."""
    shift = score_shift(validation, held_out, seed)
    note = None
    if shift.shifted:
        note = (f"held-out good images score higher than the validation images ({shift.describe()}): they come "
                "from another session (light, position), so their false-reject rates hold for that session, not "
                "the asked rate; set the threshold on the line's own good parts: slsg-edge threshold BUNDLE --good DIR")
    return {**shift.to_dict(), "n_validation": shift.n_reference, "n_held_out": shift.n_new, "note": note}


def held_out_rates(root: Path, models: dict[str, str], thresholds: dict[str, dict],
                   images: np.ndarray, heads: dict[str, str] | None = None,
                   fp32_scores: np.ndarray | None = None) -> dict[str, dict]:
    """Each model's false-reject rate on held-out good images at its own threshold (and at FP32's, to show
    what a single threshold would have cost)."""
    root, fp32 = Path(root), thresholds.get("fp32")
    return {p: held_out_rate(root / name, thresholds[p], images, fp32, p, _head(root, heads or {}, p),
                             fp32_scores if p == "fp32" else None).to_dict()
            for p, name in models.items() if p in thresholds}


def set_thresholds(job: ExportJob) -> None:
    """Every model kept gets its own threshold, carried from the RUN's by its scores on the validation images the
    RUN's threshold came from; held-out good images (test/good) measure the false-reject rate each one gives."""
    data, base = threshold_data(job.run.config, job.data), job.run.threshold
    if data is None or base is None or not data.validation:
        return
    images = load_samples(data.validation, job.size)
    if images is None:
        return
    source = f"{len(images)} validation good images of {data.root}"
    job.say(f"thresholds per model from {source} (false-reject rate {base.false_reject_rate:g})")
    report = job.report
    openvino = {OPENVINO_PREFIX + f: FILES[f] for f, r in (report.openvino_int8 or {}).items()
                if r["passed"] and f in job.models}
    models = {**job.models, **openvino}
    fp32 = job.stage / models["fp32"]
    gate = job.gate
    same_images = gate is not None and data is job.data and gate.n_good == len(images)
    # each model's validation scores: its gate's, when the gate's goods are these images (run on the files as they
    # are now); FP32's are the thresholds' and the shift's reference
    known = {k: s[:gate.n_good] for k, s in job.gate_scores.items()} if same_images else {}
    val_fp32 = known["fp32"] if "fp32" in known else model_scores(fp32, images)
    report.thresholds = model_thresholds(job.stage, models, images, base, source, job.heads,
                                         known={**known, "fp32": val_fp32})
    held = load_samples(data.test_good, job.size, HELD_OUT_IMAGES, data.seed)
    if held is not None:
        held_fp32 = model_scores(fp32, held)
        report.held_out = held_out_rates(job.stage, models, report.thresholds, held, job.heads, fp32_scores=held_fp32)
        report.held_out_shift = session_shift(val_fp32, held_fp32)
