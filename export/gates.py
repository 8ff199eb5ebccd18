"""Every precision gate of `slsg export`, in one home and by one rule.

Each candidate — the two ONNX Runtime INT8 files, each INT8 file as OpenVINO runs it, FP16, bf16 — is compared
with FP32 on the same images (`GateSet`: validation goods and anomalies, FP32's outputs on them computed once)
by `calibration.accuracy.compare`: AUROC drop with its bootstrap interval, map correlation, finiteness. Where
the candidate pools the trunk's maps differently (INT8, bf16), its global head is first refitted on its own
descriptors (`HeadRefit`). A candidate that fails its gate, or that TensorRT's parser would refuse, is left out
of the bundle with the reasons and what to try next (`export.precisions.LeftOut`); FP32 is never lost.

Calibration images come from the training split only; the gate's goods are validation images (never seen by
calibration) and its anomalies the dataset's test anomalies when it has them, else anomalies made by the
training recipe — a check, not a selection.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from calibration.accuracy import EvalData, compare, map_refusals, run_backend, run_model
from calibration.bf16 import BF16_MIN_MAP_CORRELATION, bf16_backend, gate_bf16
from calibration.bundle import CALIBRATION_DIR, Adjusted, quantize_bundle
from calibration.fp16 import export_fp16
from calibration.int8 import FLAVOUR_FILES, Int8Config, QuantizationError
from calibration.selection import select_calibration_set
from edge_runtime.backends.base import Backend, BackendError, Outputs, close_backend
from edge_runtime.backends.faithful import FRAMES, calibration_frames, unfaithful
from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN
from edge_runtime.backends.openvino_backend import (
    OPENVINO_PREFIX,
    OpenVinoBackend,
    openvino_available,
    require_precision,
)
from edge_runtime.backends.refitted_head import HEADS_DIR, head_file
from export.head_refit import (
    PROBE_RUNS_AS_THE_LINE,
    Probe,
    Refuse,
    openvino_probe,
    refit_head,
    refit_head_for_openvino,
)
from export.job import ExportJob, GateSet, LeftOut
from export.precisions import (
    FILES,
    FOR_TENSORRT,
    FP16_MIN_MAP_CORRELATION,
    int8_next_steps,
    lint_next_steps,
    no_data_next_steps,
    saturation_next_steps,
)
from export.run_data import RunData, gate_anomalies, load_samples
from export.trt_ops import check_model
from slsg.heads.global_context import read_head_meta
from slsg.heads.local_patch import LocalHeadConfig, read_local_config

# ---------------------------------------------------------------- the gate's images and the head refit


def gate_set(data: RunData, size, threshold: float, limit: int) -> GateSet | None:
    """The gate's images at `size` (at most `limit` of each kind); None without validation images."""
    good = load_samples(data.validation, size, limit, data.seed)
    if good is None:
        return None
    bad, source = gate_anomalies(data, good, size, limit)
    return GateSet(EvalData(good, bad, threshold, anomalies_source=source), len(good), len(bad), source)


@dataclass
class HeadRefit:
    """Refits each INT8 file's global head (and bf16's) on the training images the RUN's head was fitted on, as each
    library computes the descriptors (`export.head_refit`): in the file for ONNX Runtime (what `quantize_bundle`
    runs on every file it gates), beside it for OpenVINO. Each refit's pass over the gate's images gives the gate
    its outputs too. The training images are loaded once, on first use."""

    data: RunData
    gate: EvalData
    size: tuple[int, int]
    estimator: str
    say: Callable[[str], None]
    local: LocalHeadConfig | None = None  # the RUN's local head, whose memory each file gets from its own patches
    _train: np.ndarray | None = None

    @classmethod
    def for_run(cls, run, data: RunData, gate: GateSet, size, say: Callable[[str], None]) -> HeadRefit | None:
        """None for a RUN without a global head."""
        meta = read_head_meta(run.root)
        if meta is None:
            return None
        local = read_local_config(run.root)
        return cls(data, gate.eval, size, (meta.get("config") or {}).get("estimator", "ledoit_wolf"), say, local)

    def train(self) -> np.ndarray | None:
        if self._train is None:
            self.say(f"loading {len(self.data.train)} training images to refit the global head per model file")
            loaded = load_samples(self.data.train, self.size)
            self._train = loaded if loaded is not None else np.empty((0,), np.uint8)  # loaded once, even if none
        return self._train if len(self._train) >= 2 else None

    def __call__(self, model: str, path: Path) -> Adjusted:
        """The file `path` of bundle model `model` refitted as ONNX Runtime runs it (`calibration.bundle.Adjust`)."""
        train = self.train()
        if train is None:
            return Adjusted(TOO_FEW_TRAINING_IMAGES)
        return self._said(path.name, refit_head(path, train, self.gate.images(), len(self.gate.good), self.estimator,
                                                local=self.local, as_written=model in AS_WRITTEN))

    def probe_openvino(self, path: Path, precision: str = "int8", refuse: Refuse | None = None) -> Probe | dict | None:
        """OpenVINO's pass over the gate's images through `path`: the maps the gate refuses a file on, and what
        `for_openvino` refits from (`refuse`: a record instead where a first glance condemns the file)."""
        return openvino_probe(path, self.gate.images(), len(self.gate.good), precision, refuse)

    def for_openvino(self, path: Path, out: Path, precision: str = "int8", probe: Probe | None = None) -> Adjusted:
        """`path`'s head fitted on OpenVINO's descriptors at `precision` (int8, or bf16 for model.onnx) into `out`."""
        train = self.train()
        if train is None:
            return Adjusted(TOO_FEW_TRAINING_IMAGES)
        return self._said(f"{path.name} (OpenVINO {precision})",
                          refit_head_for_openvino(path, out, train, self.gate.images(), len(self.gate.good),
                                                  self.estimator, precision=precision, local=self.local,
                                                  probe=probe))

    def _said(self, name: str, done: Adjusted) -> Adjusted:
        record = done.record
        if record and record.get("refitted"):
            self.say(f"{name}: global head refitted on its own descriptors of {record['n_images']} training images "
                     f"({record['seconds']} s); gate outputs from {record['gate_outputs']}")
        return done


TOO_FEW_TRAINING_IMAGES = {"refitted": False, "reason": "fewer than 2 training images reachable"}


def open_gate(job: ExportJob) -> None:
    """The gate's images and FP32's outputs on them, once for every precision asked; without them each precision
    asked is left out with the reason."""
    asked = job.options.asked
    if not asked:
        return
    data = job.data
    gate = gate_set(data, job.size, job.threshold["value"], job.options.gate_images) if data is not None else None
    if gate is None:
        root = (job.run.config.get("data") or {}).get("root")
        why = (f"the RUN's dataset ({root}) is not reachable from here" if data is None
               else "the RUN has no validation images for the accuracy gate")
        for p in asked:
            job.report.left_out[p] = LeftOut([why], no_data_next_steps(data, root))
        return
    gate.reference = run_model(job.stage / FILES["fp32"], gate.eval.images())
    job.gate, job.gate_scores["fp32"] = gate, gate.reference.score
    job.report.gate = gate.to_dict()
    if {"int8", "bf16"} & set(asked):
        job.refit = HeadRefit.for_run(job.run, data, gate, job.size, job.say)


def _gating(job: ExportJob, precision: str) -> bool:
    return precision in job.options.asked and job.gate is not None


# ---------------------------------------------------------------- INT8 (ONNX Runtime, then OpenVINO)


def add_int8(job: ExportJob) -> None:
    """model.int8-s8.onnx (symmetric, for TensorRT) and model.int8-u8.onnx (u8 activations, for ONNX Runtime on
    x86), calibrated on training images and gated apart: the one that passes ships even when the other does not."""
    if not _gating(job, "int8"):
        return
    opts, data, gate, stage = job.options, job.data, job.gate, job.stage
    calib_size, strategy = opts.calib_size or 256, opts.calib_strategy or "random"
    job.say(f"calibrating INT8 on {min(calib_size, len(data.train))} of {len(data.train)} good training images "
            f"({strategy}, {opts.calib_method})")
    calib = select_calibration_set(data.train, job.size, n=calib_size, strategy=strategy, seed=data.seed)
    cfg = Int8Config(method=opts.calib_method, calib_size=calib_size, strategy=strategy, seed=data.seed,
                     auroc_budget=opts.auroc_budget, auto_fallback=opts.int8_fallback > 0,
                     max_fallback_nodes=opts.int8_fallback, max_fallback_rounds=max(1, opts.int8_fallback),
                     backend=opts.int8_backend, modelopt_python=opts.modelopt_python)
    job.say(f"INT8 gate: {gate.n_good} validation good images + {gate.n_anomalous} anomalies ({gate.anomalies})")
    try:
        result = quantize_bundle(stage / FILES["fp32"], calib, stage, cfg, gate.eval, adjust=job.refit,
                                 reference=gate.reference, scores=job.gate_scores)
    except QuantizationError as err:
        shutil.rmtree(stage / CALIBRATION_DIR, ignore_errors=True)
        job.report.left_out["int8"] = LeftOut([str(err)],
                                              ["--int8-backend ort (ONNX Runtime's quantiser, no extra install)"])
        return
    report = result.to_dict()
    job.report.int8 = report
    job.manifest.int8_report = _compact(report)
    steps = int8_next_steps(opts, data, len(result.fallback_nodes))
    job.report.left_out.update({f: LeftOut([r[len(f) + 2:] for r in result.failure if r.startswith(f"{f}: ")],
                                           saturation_next_steps() if s.saturated else steps)
                                for f, s in result.flavours.items() if not s.kept})
    for f in result.kept:
        job.say(f"INT8 {FLAVOUR_FILES[f]} passed its gate ({len(result.flavours[f].fallback_nodes)} layer(s) float)")
    if not result.passed:
        shutil.rmtree(stage / CALIBRATION_DIR, ignore_errors=True)
        return
    spec = calib.manifest()
    # `tensors` is the bundle-relative file the TensorRT legacy calibrator reads; its layout stays beside it.
    job.manifest.calibration = {**spec, "folder": CALIBRATION_DIR, "tensors": f"{CALIBRATION_DIR}/tensors.npy",
                                   "tensors_spec": spec["tensors"], "method": opts.calib_method,
                                   "int8_backend": opts.int8_backend}
    job.models.update({f: FILES[f] for f in result.kept})


def gate_openvino_int8(job: ExportJob) -> None:
    """Each INT8 file kept, as OpenVINO runs it, against FP32 by the same rule and images (OpenVINO lowers Q/DQ its
    own way: ONNX Runtime's verdict does not carry over), its global head first refitted on OpenVINO's descriptors.
    What needs no refit comes first: the runtime's check that OpenVINO computes the file's arithmetic on this CPU
    (`edge_runtime.backends.faithful`: `--backend auto` would never run it here otherwise), then the gate's map rule
    on OpenVINO's pass over the gate's images — the pass the refit then starts from, and whose outputs the refitted
    file's gate reads (`export.head_refit`). A file refused there costs no refit (juice_bottle 512×256, the
    symmetric file in 7-bit weights: map r 0.58).
    Without OpenVINO nothing is recorded, and the runtime refuses openvino-int8 for this bundle rather than run an
    ungated model."""
    flavours = [f for f in ("int8-s8", "int8-u8") if f in job.models]
    if not flavours or not openvino_available():
        return
    job.say("gating the INT8 files as OpenVINO runs them (same images, same rule)")
    gate, stage, out = job.gate, job.stage, {}
    images = gate.eval.images()
    frames = calibration_frames(stage / job.manifest.calibration["tensors"])
    floor = Int8Config().min_map_correlation
    for flavour in flavours:
        key, path = OPENVINO_PREFIX + flavour, stage / FILES[flavour]
        why = _unfaithful_here(path, key, gate.eval.good[:FRAMES] if frames is None else frames)
        if why is not None:
            out[flavour] = {"passed": False, "reasons": [why]}
            continue
        run = partial(_openvino_outputs, path, key, images)
        seen = _openvino_candidate(job, path, "int8", stage / head_file(key), run, floor)
        if seen.refused is not None:  # no refit
            out[flavour] = seen.refused
            continue
        job.gate_scores[key] = seen.outputs.score
        acc = compare(gate.reference, seen.outputs, gate.eval, job.options.auroc_budget, floor)
        out[flavour] = {**acc.to_dict(), **({"head_refit": seen.record} if seen.record else {})}
        if seen.fitted is not None and acc.passed:
            job.heads[key] = head_file(key)
        elif seen.fitted is not None:
            seen.fitted.unlink()  # an empty heads/ goes with `drop_heads_without_model`
    job.report.openvino_int8 = out
    job.manifest.openvino_int8 = out


@dataclass
class _Candidate:
    """A candidate OpenVINO runs (an INT8 file, or model.onnx in bf16) as its gate sees it: refused on its maps
    before any refit, or its outputs on the gate's images with its head refitted for it where it has one."""

    refused: dict | None = None
    outputs: Outputs | None = None
    record: dict | None = None       # the head refit's record
    fitted: Path | None = None       # the head file written for it


def _openvino_candidate(job: ExportJob, path: Path, precision: str, head: Path,
                        run: Callable[[Path | None], Outputs], floor: float) -> _Candidate:
    """The candidate's outputs on the gate's images, its head refitted where the RUN has one; refused on its maps
    before any refit where they fail the rule. `run` runs the candidate as the line does (with `head`, or as it is
    for None).

    Where the refit's pass computes what the line computes (`PROBE_RUNS_AS_THE_LINE`: INT8) one OpenVINO pass serves
    the map rule, the refit and the gate. Elsewhere (bf16) the map rule reads `run`'s pass, which is also the gate's
    where no head is refitted, and the refitted candidate is run again for its gate."""
    refit = job.refit
    probe = None
    if refit is not None and precision in PROBE_RUNS_AS_THE_LINE and refit.train() is not None:
        probe = refit.probe_openvino(path, precision, partial(_refused_at_a_glance, job.gate.reference, floor))
        if isinstance(probe, dict) and not probe.get("passed", True):
            return _Candidate(probe)
    plain = None if isinstance(probe, Probe) else run(None)
    refused = _maps_refused(job.gate.reference, probe.seen.maps if plain is None else plain.maps, floor)
    if refused is not None or refit is None:
        return _Candidate(refused, plain)
    if refit.train() is None:  # no training images to refit on: the candidate as it is
        return _Candidate(None, plain, TOO_FEW_TRAINING_IMAGES)
    if probe is None:
        probe = refit.probe_openvino(path, precision)
    if not isinstance(probe, Probe):  # a head that cannot be refitted: the candidate as it is
        return _Candidate(None, plain if plain is not None else run(None), probe)
    done = refit.for_openvino(path, head, precision, probe=probe)
    fitted = head if done.record and done.record.get("refitted") else None
    outputs = done.outputs if done.outputs is not None else (run(fitted) if fitted or plain is None else plain)
    return _Candidate(None, outputs, done.record, fitted)


#: How far below the map rule's floor a first glance (`export.head_refit.GLANCE`: a quarter of the gate's images,
#: goods and anomalies alike) must put a file to refuse it without the rest. juice_bottle 512×256 on an AVX-512 CPU:
#: the symmetric file as OpenVINO runs it (7-bit weights) sits at map r 0.58 against a floor of 0.9, and its refusal
#: no longer waits for the other three quarters of the pass.
GLANCE_MARGIN = 0.2


def _refused_at_a_glance(reference: Outputs, floor: float, picked: np.ndarray, maps: np.ndarray) -> dict | None:
    """The gate's refusal of a file whose maps on the `picked` gate images already fall `GLANCE_MARGIN` below the
    map rule's `floor`, or None (the pass goes on, and the rule is applied to every image)."""
    r, reasons = map_refusals(Outputs(reference.maps[picked], reference.score[picked]), maps, floor - GLANCE_MARGIN)
    if not reasons:
        return None
    return {"passed": False, "map_pearson": r, "glance": int(len(picked)),
            "reasons": [f"{why} on a first {len(picked)} of the gate's {len(reference.maps)} images (floor "
                        f"{floor:.4f}, refused without the rest below {floor - GLANCE_MARGIN:.4f})" for why in reasons]}


def _unfaithful_here(path: Path, key: str, frames: np.ndarray) -> str | None:
    """Why OpenVINO does not compute the INT8 file's own arithmetic on this CPU, or None (the runtime's check:
    `--backend auto` would never run it here otherwise)."""
    backend = OpenVinoBackend(path, precision="int8", model=key)
    try:
        return unfaithful(backend, frames)
    finally:
        close_backend(backend)


def _openvino_outputs(path: Path, key: str, images: np.ndarray, head: Path | None = None) -> Outputs:
    return _outputs(OpenVinoBackend(path, precision="int8", model=key, head=head), images)


def _outputs(backend: Backend, images: np.ndarray) -> Outputs:
    try:
        return run_backend(backend, images)
    finally:
        close_backend(backend)


def _maps_refused(reference: Outputs, maps: np.ndarray, floor: float) -> dict | None:
    """The gate's record of a candidate refused on its anomaly maps alone (`map_refusals`: NaN/inf, a map that does
    not follow FP32's on the gate's images), or None. The map is SLSG's: no head refitted for the candidate changes
    it, so this runs before the refit and a candidate refused here costs one pass, not a refit and a pass."""
    r, reasons = map_refusals(reference, maps, floor)
    return {"passed": False, "map_pearson": r, "reasons": reasons} if reasons else None


# ---------------------------------------------------------------- FP16 and bf16


def add_fp16(job: ExportJob) -> None:
    """model.fp16.onnx (graph block and scoring stay FP32), checked against FP32 by the INT8 rule."""
    if not _gating(job, "fp16"):
        return
    job.say("converting to FP16 (graph block and scoring stay FP32) and gating it like INT8")
    gate, out = job.gate, job.stage / FILES["fp16"]
    conversion = export_fp16(job.stage / FILES["fp32"], out, gate.eval.good)
    acc = compare(gate.reference, run_model(out, gate.eval.images()), gate.eval, job.options.auroc_budget,
                  FP16_MIN_MAP_CORRELATION)
    record = {**conversion.to_dict(), "accuracy": acc.to_dict()}
    job.report.fp16 = job.manifest.fp16_report = record
    if acc.passed:
        job.models["fp16"] = FILES["fp16"]
        return
    out.unlink(missing_ok=True)
    job.report.left_out["fp16"] = LeftOut(acc.reasons, ["--auroc-budget (accept a larger drop, knowingly)",
                                                        "deploy FP32 (model.onnx) or INT8 instead"])


def add_bf16(job: ExportJob) -> None:
    """bf16 (model.onnx in OpenVINO bf16) against FP32 by the INT8 rule, its global head first refitted on bf16's own
    descriptors (bf16 moves the pooled descriptors as INT8 does). A map that fails the gate's rule is refused before
    the refit (`_maps_refused`: juice_bottle 512×256, map r 0.985 < 0.99, refused in 8 s where the refit and gate took
    28 s). Where it cannot be measured — no OpenVINO, or a CPU without bf16 — it is left out with that reason, never
    assumed."""
    if not _gating(job, "bf16"):
        return
    job.say("gating bf16 (model.onnx in OpenVINO's bf16 arithmetic) like INT8")
    model, head, gate = job.stage / FILES["fp32"], job.stage / head_file("bf16"), job.gate
    try:
        require_precision("bf16")  # before any pass: OpenVINO would run f32 under the name on a CPU without bf16
        seen = _openvino_candidate(job, model, "bf16", head,
                                   lambda fitted: _outputs(bf16_backend(model, head=fitted), gate.eval.images()),
                                   BF16_MIN_MAP_CORRELATION)
        refused, refit_record, fitted = seen.refused, seen.record, seen.fitted
        if refused is None:
            acc, report = gate_bf16(model, gate.eval, job.options.auroc_budget, reference=gate.reference,
                                    outputs=seen.outputs)
    except BackendError as e:
        job.report.bf16 = job.manifest.bf16_report = {"error": str(e)}
        job.report.left_out["bf16"] = LeftOut([str(e)], ["export with --bf16 on a CPU with bf16 (AVX-512 BF16 or "
                                                         "AMX), e.g. the line PC", "deploy FP32 or INT8 instead"])
        return
    next_steps = ["--auroc-budget (accept a larger drop, knowingly)", "deploy FP32 (openvino) or INT8 instead"]
    if refused is not None:
        job.report.bf16 = job.manifest.bf16_report = {"file": model.name, "accuracy": refused}
        job.report.left_out["bf16"] = LeftOut(refused["reasons"], next_steps)
        return
    record = {**report.to_dict(), **({"head_refit": refit_record} if refit_record else {})}
    job.report.bf16 = job.manifest.bf16_report = record
    if acc.passed:
        job.models["bf16"] = FILES["bf16"]
        if fitted is not None:
            job.heads["bf16"] = head_file("bf16")
        return
    if fitted is not None:
        fitted.unlink()
    job.report.left_out["bf16"] = LeftOut(acc.reasons, next_steps)


# ---------------------------------------------------------------- TensorRT lint


def lint_models(job: ExportJob) -> None:
    """Every model file TensorRT reads, through TensorRT's ONNX op rules; one the parser would refuse leaves the
    bundle (ONNX Runtime's u8 file is linted and recorded, never refused: TensorRT does not read it)."""
    for precision in [p for p in job.models if p != "bf16"]:  # bf16 is model.onnx: linted as fp32
        path = job.stage / FILES[precision]
        report = check_model(path, tuple(job.options.trt_versions))
        job.report.lint[FILES[precision]] = {"file": FILES[precision], "for_tensorrt": FOR_TENSORRT[precision],
                                             "ok": report.ok, **report.summary()}
        if report.ok or not FOR_TENSORRT[precision]:
            continue
        path.unlink(missing_ok=True)
        del job.models[precision]
        reasons = [f"TensorRT {line}" for line in report.message().splitlines()[:20]]
        job.report.left_out[precision] = LeftOut(["TensorRT's ONNX parser would refuse it:"] + reasons,
                                                 lint_next_steps())
    gated = {OPENVINO_PREFIX + f for f, r in (job.report.openvino_int8 or {}).items()
             if r["passed"] and f in job.models}
    drop_heads_without_model(job.stage, job.heads, gated | ({"bf16"} if "bf16" in job.models else set()))


def drop_heads_without_model(stage: Path, heads: dict[str, str], keep: set[str]) -> None:
    """A refitted head whose model left the bundle (after its OpenVINO gate, at the TensorRT lint) goes too, and
    the heads folder with the last of them."""
    for key in [k for k in heads if k not in keep]:
        (stage / heads.pop(key)).unlink(missing_ok=True)
    if not heads:
        shutil.rmtree(stage / HEADS_DIR, ignore_errors=True)


def _compact(report: dict) -> dict:
    """What the manifest keeps of the INT8 report: the gate's numbers, not the per-node details."""
    keep = ("passed", "kept", "failure", "fallback_nodes", "fallback_rounds", "fp32", "flavours", "config",
            "adjusted")
    return {k: report[k] for k in keep if k in report}
