"""`slsg export --fp16/--int8`: calibrate on the RUN's good training images, gate on held-out data, and never
lose the FP32 bundle over a precision that did not make it.

Calibration images come from the training split only. The accuracy gate uses the validation good images
(never seen by calibration) and anomalies — the dataset's test anomalies when it has them, else anomalies made
by the training recipe — a check, not a selection. A model that fails its gate, or that TensorRT's parser
would refuse (`export.trt_ops.lint_qdq`), is left out of the bundle: the reasons and what to try next go into
the manifest (`export.left_out`) and on screen, and `slsg export` exits 3. Each INT8 file's global head (and
bf16's) is refitted on its own descriptors before its gate (`export.head_refit`). Every model that is kept gets
its own threshold: the RUN's, carried by its own scores on the validation images (`export.thresholds`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.backends.openvino_backend import OPENVINO_PREFIX
from edge_runtime.bundle import load_bundle, write_manifest
from export.run_data import RunData, gate_anomalies, load_samples, open_run_data, threshold_data

GATE_IMAGES = 100        # per kind (good, anomalous): enough for a bootstrap interval of about ±1–2 AUROC points
HELD_OUT_IMAGES = 200    # test/good images for the measured false-reject rates
FP16_MIN_MAP_CORRELATION = 0.99
#: The model files each precision writes, and whether TensorRT reads them (the lint is fatal only for those).
#: bf16 is model.onnx compiled by OpenVINO for bf16 (calibration.bf16): no file of its own, so no lint of its own.
FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx", "int8-cpu": "model.int8-cpu.onnx",
         "bf16": "model.onnx"}
FOR_TENSORRT = {"fp32": True, "fp16": True, "int8": True, "int8-cpu": False, "bf16": False}


@dataclass
class PrecisionOptions:
    """What `slsg export` asks of the extra precisions."""

    fp16: bool = False
    int8: bool = False
    bf16: bool = False
    calib_size: int | None = None
    calib_strategy: str | None = None
    calib_method: str = "minmax"
    auroc_budget: float = 0.01
    int8_fallback: int = 16              # most layers the sensitivity-ordered fallback may keep float (0: off)
    int8_backend: str = "ort"            # ort | modelopt (model.int8.onnx only; int8-cpu stays ORT's)
    modelopt_python: str | None = None
    gate_images: int = GATE_IMAGES


@dataclass
class LeftOut:
    """A precision asked for and not shipped: why, and options that may get it through next time."""

    reasons: list[str]
    next: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PrecisionReport:
    int8: dict | None = None
    fp16: dict | None = None
    bf16: dict | None = None
    openvino_int8: dict | None = None      # flavour → AccuracyReport dict of the file under OpenVINO
    left_out: dict[str, LeftOut] = field(default_factory=dict)
    thresholds: dict[str, dict] = field(default_factory=dict)
    held_out: dict[str, dict] = field(default_factory=dict)
    held_out_shift: dict | None = None     # export.thresholds.session_shift: held-out good vs validation good (FP32)
    lint: dict[str, dict] = field(default_factory=dict)
    gate: dict = field(default_factory=dict)


# ---------------------------------------------------------------- what to try next


def int8_next_steps(opts: PrecisionOptions, data: RunData | None, fallback_used: int) -> list[str]:
    """Real `slsg export` options that change what INT8 calibration and its gate do."""
    steps = []
    if opts.int8_fallback == 0:
        steps.append("--int8-fallback 16 (keep the most sensitive layers in float)")
    elif fallback_used >= opts.int8_fallback:
        steps.append(f"--int8-fallback {2 * opts.int8_fallback} (let the fallback keep more layers in float)")
    others = [m for m in ("percentile", "entropy", "minmax") if m != opts.calib_method]
    steps.append(f"--calib-method {others[0]} (another way to set the activation ranges)")
    size = opts.calib_size or 256
    if data is not None and len(data.train) > size:
        steps.append(f"--calib-size {min(2 * size, len(data.train))} (more calibration images)")
    if (opts.calib_strategy or "random") != "diverse":
        steps.append("--calib-strategy diverse (calibration images that cover the variety of the line)")
    if opts.int8_backend == "ort":
        steps.append("--int8-backend modelopt (NVIDIA ModelOpt makes model.int8.onnx; see docs/calibration.md)")
    steps.append(f"--auroc-budget {2 * opts.auroc_budget:g} (accept a larger AUROC drop, knowingly)")
    if not opts.fp16:
        steps.append("--fp16 (FP16 keeps FP32's accuracy and still halves the compute on a Jetson)")
    return steps


def _no_data_next(data: RunData | None, root: str | None) -> list[str]:
    if data is None:
        return [f"export on a machine where the RUN's dataset ({root or 'unknown'}) is reachable"]
    return ["give the RUN validation images: a LOCO validation/good folder, or train with a held-out slice "
            "(TrainConfig.val_fraction > 0)"]


def lint_next_steps() -> list[str]:
    return ["this is a toolkit bug (the quantiser emitted Q/DQ that TensorRT cannot parse): please report it with "
            "the manifest's export.tensorrt_lint section",
            "--int8-backend modelopt (NVIDIA's own quantiser for model.int8.onnx)",
            "meanwhile model.int8-cpu.onnx runs INT8 in ONNX Runtime (`slsg-edge run --backend onnxruntime`)"]


# ---------------------------------------------------------------- gate data


@dataclass
class GateSet:
    eval: object          # calibration.accuracy.EvalData
    n_good: int
    n_anomalous: int
    anomalies: str        # where the anomalies come from

    def to_dict(self) -> dict:
        return {"n_good": self.n_good, "n_anomalous": self.n_anomalous, "good": "validation split of the RUN",
                "anomalies": self.anomalies}


def gate_set(data: RunData, size, threshold: float, limit: int) -> GateSet | None:
    from calibration.accuracy import EvalData

    good = load_samples(data.validation, size, limit, data.seed)
    if good is None:
        return None
    bad, source = gate_anomalies(data, good, size, limit)
    return GateSet(EvalData(good, bad, threshold, anomalies_source=source), len(good), len(bad), source)


# ---------------------------------------------------------------- INT8 and FP16


@dataclass
class HeadRefit:
    """Refits each INT8 file's global head (and bf16's) on the training images the RUN's head was fitted on, as each
    library computes the descriptors (`export.head_refit`): in the file for ONNX Runtime (what `quantize_bundle`
    runs on every file it gates), beside it for OpenVINO. The training images are loaded once, on first use."""

    data: RunData
    validation: np.ndarray
    size: tuple[int, int]
    estimator: str
    say: Callable[[str], None]
    _train: np.ndarray | None = None

    @classmethod
    def for_run(cls, run, data: RunData, gate: GateSet, size, say: Callable[[str], None]) -> HeadRefit | None:
        """None for an SLSG-only RUN."""
        from slsg.heads.global_context import read_head_meta

        meta = read_head_meta(run.root)
        if meta is None:
            return None
        return cls(data, gate.eval.good, size, (meta.get("config") or {}).get("estimator", "ledoit_wolf"), say)

    def train(self) -> np.ndarray | None:
        if self._train is None:
            self.say(f"loading {len(self.data.train)} training images to refit the global head per model file")
            loaded = load_samples(self.data.train, self.size)
            self._train = loaded if loaded is not None else np.empty((0,), np.uint8)  # loaded once, even if none
        return self._train if len(self._train) >= 2 else None

    def __call__(self, path: Path) -> dict | None:
        from export.head_refit import refit_head

        train = self.train()
        if train is None:
            return {"refitted": False, "reason": "fewer than 2 training images reachable"}
        return self._said(path.name, refit_head(path, train, self.validation, self.estimator))

    def for_openvino(self, path: Path, out: Path, precision: str = "int8") -> dict | None:
        """`path`'s head fitted on OpenVINO's descriptors at `precision` (int8, or bf16 for model.onnx) into `out`."""
        from export.head_refit import refit_head_for_openvino

        train = self.train()
        if train is None:
            return {"refitted": False, "reason": "fewer than 2 training images reachable"}
        return self._said(f"{path.name} (OpenVINO {precision})",
                          refit_head_for_openvino(path, out, train, self.validation, self.estimator,
                                                  precision=precision))

    def _said(self, name: str, record: dict | None) -> dict | None:
        if record and record.get("refitted"):
            self.say(f"{name}: global head refitted on its own descriptors of {record['n_images']} training images "
                     f"({record['seconds']} s)")
        return record


def _int8(stage: Path, data: RunData, gate: GateSet, size, opts: PrecisionOptions,
          say: Callable[[str], None], adjust: Callable | None = None) -> tuple[dict | None, dict[str, LeftOut]]:
    """(manifest additions or None, why each INT8 file that is not in the bundle was left out).

    The two files are gated apart: the one that passes ships even when the other does not."""
    from calibration.bundle import CALIBRATION_DIR, quantize_bundle
    from calibration.int8 import FLAVOUR_FILES, Int8Config, QuantizationError
    from calibration.selection import select_calibration_set

    calib_size, strategy = opts.calib_size or 256, opts.calib_strategy or "random"
    say(f"calibrating INT8 on {min(calib_size, len(data.train))} of {len(data.train)} good training images "
        f"({strategy}, {opts.calib_method})")
    calib = select_calibration_set(data.train, size, n=calib_size, strategy=strategy, seed=data.seed)
    cfg = Int8Config(method=opts.calib_method, calib_size=calib_size, strategy=strategy, seed=data.seed,
                     auroc_budget=opts.auroc_budget, auto_fallback=opts.int8_fallback > 0,
                     max_fallback_nodes=opts.int8_fallback, max_fallback_rounds=max(1, opts.int8_fallback),
                     backend=opts.int8_backend, modelopt_python=opts.modelopt_python)
    say(f"INT8 gate: {gate.n_good} validation good images + {gate.n_anomalous} anomalies ({gate.anomalies})")
    try:
        result = quantize_bundle(stage / FILES["fp32"], calib, stage, cfg, gate.eval, adjust=adjust)
    except QuantizationError as err:
        shutil.rmtree(stage / CALIBRATION_DIR, ignore_errors=True)
        return None, {"int8": LeftOut([str(err)], ["--int8-backend ort (ONNX Runtime's quantiser, no extra install)"])}
    report = result.to_dict()
    steps = int8_next_steps(opts, data, len(result.fallback_nodes))
    left = {f: LeftOut([r[len(f) + 2:] for r in result.failure if r.startswith(f"{f}: ")], steps)
            for f, s in result.flavours.items() if not s.kept}
    for f in result.kept:
        say(f"INT8 {FLAVOUR_FILES[f]} passed its gate ({len(result.flavours[f].fallback_nodes)} layer(s) float)")
    if not result.passed:
        shutil.rmtree(stage / CALIBRATION_DIR, ignore_errors=True)
        return {"int8_report": _compact(report)}, left
    spec = calib.manifest()
    # `tensors` is the bundle-relative file the TensorRT legacy calibrator reads; its layout stays beside it.
    calibration = {**spec, "folder": CALIBRATION_DIR, "tensors": f"{CALIBRATION_DIR}/tensors.npy",
                   "tensors_spec": spec["tensors"], "method": opts.calib_method, "int8_backend": opts.int8_backend}
    return {"calibration": calibration, "int8_report": _compact(report), "_full": report, "kept": result.kept}, left


def _fp16(stage: Path, gate: GateSet, budget: float) -> tuple[dict, LeftOut | None]:
    """model.fp16.onnx, checked against FP32 by the same gate as INT8 (same images, same rule)."""
    from calibration.accuracy import compare, run_model
    from calibration.fp16 import export_fp16

    out = stage / FILES["fp16"]
    conversion = export_fp16(stage / FILES["fp32"], out, gate.eval.good)
    images = gate.eval.images()
    acc = compare(run_model(stage / FILES["fp32"], images), run_model(out, images), gate.eval, budget,
                  FP16_MIN_MAP_CORRELATION)
    report = {**conversion.to_dict(), "accuracy": acc.to_dict()}
    if acc.passed:
        return report, None
    out.unlink(missing_ok=True)
    return report, LeftOut(acc.reasons, ["--auroc-budget (accept a larger drop, knowingly)",
                                         "deploy FP32 (model.onnx) or INT8 instead"])


def _bf16(stage: Path, gate: GateSet, budget: float,
          refit: HeadRefit | None) -> tuple[dict, LeftOut | None, str | None]:
    """bf16 (model.onnx in OpenVINO bf16) against FP32 by the INT8 rule, its global head first refitted on bf16's
    own descriptors (bf16 moves the pooled descriptors as INT8 does: with FP32's Gaussian bottle's fused threshold
    sat at 2.21 against FP32's 1.66); (record, why it was left out or None, the head file kept or None). Where it
    cannot be measured — no OpenVINO, or a CPU without bf16 — it is left out with that reason, never assumed."""
    from calibration.bf16 import bf16_backend, gate_bf16
    from edge_runtime.backends.base import BackendError
    from edge_runtime.backends.openvino_backend import cpu_has_bf16, openvino_available
    from edge_runtime.backends.refitted_head import head_file

    model, head = stage / FILES["fp32"], stage / head_file("bf16")
    fitted, refit_record = None, None
    try:
        if refit is not None and openvino_available() and cpu_has_bf16():
            refit_record = refit.for_openvino(model, head, "bf16")
            fitted = head if refit_record and refit_record.get("refitted") else None
        acc, report = gate_bf16(model, gate.eval, budget, candidate=bf16_backend(model, head=fitted))
    except BackendError as e:
        return {"error": str(e)}, LeftOut([str(e)], ["export with --bf16 on a CPU with bf16 (AVX-512 BF16 or AMX), "
                                                     "e.g. the line PC", "deploy FP32 or INT8 instead"]), None
    record = {**report.to_dict(), **({"head_refit": refit_record} if refit_record else {})}
    if acc.passed:
        return record, None, head_file("bf16") if fitted is not None else None
    if fitted is not None:
        fitted.unlink()
    return record, LeftOut(acc.reasons, ["--auroc-budget (accept a larger drop, knowingly)",
                                         "deploy FP32 (openvino) or INT8 instead"]), None


def _openvino_int8(stage: Path, gate: GateSet, budget: float, flavours: list[str],
                   refit: HeadRefit | None) -> tuple[dict, dict[str, str]] | None:
    """(flavour → AccuracyReport dict, threshold key → bundle-relative head file): each INT8 file as OpenVINO runs
    it, against FP32 by the same rule and images as ONNX Runtime's INT8 gate (OpenVINO lowers Q/DQ its own way:
    ORT's verdict does not carry over), its global head first refitted on OpenVINO's descriptors. None where
    OpenVINO is absent; the runtime then refuses openvino-int8 for this bundle rather than run an ungated model."""
    from calibration.accuracy import compare, run_backend, run_model
    from calibration.int8 import Int8Config
    from edge_runtime.backends.openvino_backend import OPENVINO_PREFIX, OpenVinoBackend, openvino_available
    from edge_runtime.backends.refitted_head import head_file

    if not openvino_available():
        return None
    images = gate.eval.images()
    ref = run_model(stage / FILES["fp32"], images)
    out, heads = {}, {}
    for flavour in flavours:
        key, path = OPENVINO_PREFIX + flavour, stage / FILES[flavour]
        head = stage / head_file(key)
        record = refit.for_openvino(path, head) if refit is not None else None
        fitted = head if record and record.get("refitted") else None
        backend = OpenVinoBackend(path, precision="int8", model=key, head=fitted)
        acc = compare(ref, run_backend(backend, images), gate.eval, budget, Int8Config().min_map_correlation)
        out[flavour] = {**acc.to_dict(), **({"head_refit": record} if record else {})}
        if fitted is not None and acc.passed:
            heads[key] = head_file(key)
        elif fitted is not None:
            fitted.unlink()  # an empty heads/ goes with `_drop_heads_without_model`
    return out, heads


def _lint(stage: Path, precision: str, versions) -> tuple[dict, LeftOut | None]:
    """The TensorRT lint of one model file; a TensorRT model that would not parse is left out."""
    from export.trt_ops import check_model

    path = stage / FILES[precision]
    report = check_model(path, tuple(versions))
    record = {"file": FILES[precision], "for_tensorrt": FOR_TENSORRT[precision], "ok": report.ok,
              **report.summary()}
    if report.ok or not FOR_TENSORRT[precision]:
        return record, None
    path.unlink(missing_ok=True)
    reasons = [f"TensorRT {line}" for line in report.message().splitlines()[:20]]
    return record, LeftOut(["TensorRT's ONNX parser would refuse it:"] + reasons, lint_next_steps())


# ---------------------------------------------------------------- thresholds


def _thresholds(stage: Path, run, models: dict[str, str], heads: dict[str, str], size, report: PrecisionReport,
                say: Callable[[str], None]) -> None:
    """Each model's threshold carried from the RUN's by its scores on the validation images; held-out rates from
    test/good."""
    from export.thresholds import held_out_rates, model_scores, model_thresholds, session_shift

    data = threshold_data(run.config)
    base = run.threshold
    if data is None or base is None or not data.validation:
        return
    images = load_samples(data.validation, size)
    if images is None:
        return
    source = f"{len(images)} validation good images of {data.root}"
    say(f"thresholds per model from {source} (false-reject rate {base.false_reject_rate:g})")
    fp32 = stage / models["fp32"]
    val_fp32 = model_scores(fp32, images)  # scored once: the thresholds' reference and the shift check's
    report.thresholds = model_thresholds(stage, models, images, base, source, heads, reference=val_fp32)
    held = load_samples(data.test_good, size, HELD_OUT_IMAGES, data.seed)
    if held is not None:
        held_fp32 = model_scores(fp32, held)
        report.held_out = held_out_rates(stage, models, report.thresholds, held, heads, fp32_scores=held_fp32)
        report.held_out_shift = session_shift(val_fp32, held_fp32)


def _drop_heads_without_model(stage: Path, manifest: dict, gated: dict[str, str]) -> None:
    """A refitted head whose model file left the bundle after its OpenVINO gate (the TensorRT lint) goes too."""
    from edge_runtime.backends.refitted_head import HEADS_DIR

    heads = manifest.pop("heads", {})
    for key, name in heads.items():
        if key not in gated:
            (stage / name).unlink(missing_ok=True)
    kept = {k: v for k, v in heads.items() if k in gated}
    if kept:
        manifest["heads"] = kept
    else:
        shutil.rmtree(stage / HEADS_DIR, ignore_errors=True)


def _compact(report: dict) -> dict:
    """What the manifest keeps of the INT8 report: the gate's numbers, not the per-node details."""
    keep = ("passed", "kept", "failure", "fallback_nodes", "fallback_rounds", "fp32", "flavours", "config",
            "adjusted")
    return {k: report[k] for k in keep if k in report}


def add_precisions(stage: Path, run, opts: PrecisionOptions, versions,
                   say: Callable[[str], None] = print) -> PrecisionReport:
    """Write the asked precisions into the staged (FP32-verified) bundle; left-out ones are recorded, not fatal.

    Every model in the bundle ends with its own threshold (when the validation images are reachable) and a
    TensorRT lint record, whether or not extra precisions were asked for."""
    bundle = load_bundle(stage)
    size = bundle.size
    manifest = dict(bundle.manifest)
    report = PrecisionReport()
    requested = [p for p, on in (("int8", opts.int8), ("fp16", opts.fp16), ("bf16", opts.bf16)) if on]
    asked = list(requested)
    data = open_run_data(run.config) if asked else None
    gate = gate_set(data, size, bundle.threshold.value, opts.gate_images) if data is not None else None
    if asked and gate is None:
        root = (run.config.get("data") or {}).get("root")
        why = (f"the RUN's dataset ({root}) is not reachable from here" if data is None
               else "the RUN has no validation images for the accuracy gate")
        for p in asked:
            report.left_out[p] = LeftOut([why], _no_data_next(data, root))
        asked = []
    if gate is not None:
        report.gate = gate.to_dict()
    models = {"fp32": FILES["fp32"]}
    refit = HeadRefit.for_run(run, data, gate, size, say) if {"int8", "bf16"} & set(asked) else None
    heads: dict[str, str] = {}
    if "int8" in asked:
        added, left = _int8(stage, data, gate, size, opts, say, refit)
        kept = added.pop("kept", []) if added else []
        if added:
            full = added.pop("_full", None)
            manifest.update(added)
            report.int8 = full or added.get("int8_report")
        report.left_out.update(left)
        if kept:
            models.update({f: FILES[f] for f in kept})
            say("gating the INT8 files as OpenVINO runs them (same images, same rule)")
            gated = _openvino_int8(stage, gate, opts.auroc_budget, kept, refit)
            if gated is not None:
                report.openvino_int8, ov_heads = gated
                manifest["openvino_int8"] = report.openvino_int8
                heads.update(ov_heads)
    floats = {"fp16": ("converting to FP16 (graph block and scoring stay FP32) and gating it like INT8",
                       lambda: (*_fp16(stage, gate, opts.auroc_budget), None)),
              "bf16": ("gating bf16 (model.onnx in OpenVINO's bf16 arithmetic) like INT8",
                       lambda: _bf16(stage, gate, opts.auroc_budget, refit))}
    for precision, (what, gate_float) in floats.items():
        if precision not in asked:
            continue
        say(what)
        float_report, left, head = gate_float()
        setattr(report, precision, float_report)
        manifest[f"{precision}_report"] = float_report
        if left is None:
            models[precision] = FILES[precision]
            heads.update({precision: head} if head else {})
        else:
            report.left_out[precision] = left
    if heads:
        manifest["heads"] = heads
    for precision in [p for p in models if p != "bf16"]:
        report.lint[FILES[precision]], left = _lint(stage, precision, versions)
        if left is not None:
            del models[precision]
            report.left_out[precision] = left
    gated_ov = {OPENVINO_PREFIX + f: FILES[f] for f, r in (report.openvino_int8 or {}).items()
                if r["passed"] and f in models}
    with_heads = dict(gated_ov)
    if "bf16" in models:
        with_heads["bf16"] = FILES["bf16"]
    _drop_heads_without_model(stage, manifest, with_heads)
    _thresholds(stage, run, {**models, **gated_ov}, manifest.get("heads", {}), size, report, say)
    manifest["models"] = models
    if report.thresholds:
        manifest["thresholds"] = report.thresholds
        manifest["threshold"] = report.thresholds["fp32"]
    export = dict(manifest.get("export", {}))
    export.update({"tensorrt_lint": report.lint, "gate": report.gate, "held_out": report.held_out,
                   "held_out_shift": report.held_out_shift,
                   "asked": requested,
                   "left_out": {p: lo.to_dict() for p, lo in report.left_out.items()}})
    manifest["export"] = export
    write_manifest(stage, manifest)
    load_bundle(stage)
    return report


# ---------------------------------------------------------------- display


def precision_table(report: PrecisionReport):
    """Each model kept: AUROC and its drop with the bootstrap interval, map correlation, score ρ, its own
    threshold, the false-reject rate on held-out good images, size and CPU latency."""
    from rich.table import Table

    table = Table(title="precisions (ONNX Runtime unless named, this CPU)")
    for col in ("model", "AUROC", "ΔAUROC (95% interval)", "map r", "score ρ", "threshold",
                "held-out FRR", "MB", "CPU ms"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def fmt(v, spec=".3f"):
        return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)

    def frr(p):
        h = report.held_out.get(p)
        if not h:
            return "–"
        text = f"{h['false_reject_rate']:.1%} ({h['false_rejects']}/{h['n']})"
        at = h.get("at_fp32_threshold")
        return text if p == "fp32" or at is None else f"{text}; {at:.1%} at fp32's"

    def thr(p):
        t = report.thresholds.get(p)
        return "–" if not t else f"{t['value']:.4f}"

    int8 = report.int8  # every flavour measured, the ones left out marked so
    acc0 = next((f["accuracy"] for f in (int8 or {}).get("flavours", {}).values() if f.get("accuracy")), None)
    fp32 = (int8 or {}).get("fp32", {})
    table.add_row("fp32", fmt(acc0 and acc0["auroc_fp32"]), "", "1.000", "1.000", thr("fp32"), frr("fp32"),
                  fmt(fp32.get("bytes", 0) / 1e6 if fp32 else None, ".1f"), fmt(fp32.get("latency_ms"), ".1f"))
    for name, f in ((int8 or {}).get("flavours") or {}).items():
        a = f.get("accuracy") or {}
        label = name if f.get("kept", True) else f"{name} (left out)"
        table.add_row(label, fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr(name), frr(name), fmt(f["bytes"] / 1e6, ".1f"),
                      fmt(f["latency_ms"], ".1f"))
    for name, a in (report.openvino_int8 or {}).items():  # the same files as OpenVINO runs them: gated apart
        shipped = a.get("passed") and name not in report.left_out
        label = f"{name} (OpenVINO)" if shipped else f"{name} (OpenVINO, left out)"
        key = OPENVINO_PREFIX + name
        table.add_row(label, fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr(key), frr(key), "–", "–")
    if report.fp16 and "fp16" not in report.left_out:
        a = report.fp16.get("accuracy") or {}
        table.add_row("fp16", fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr("fp16"), frr("fp16"), fmt(report.fp16["bytes"] / 1e6, ".1f"),
                      "–")
    if report.bf16 and "bf16" not in report.left_out:
        a = report.bf16.get("accuracy") or {}
        table.add_row("bf16 (OpenVINO)", fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr("bf16"), frr("bf16"), "–", "–")
    return table


def _drop(a: dict) -> str:
    if a.get("auroc_drop") is None:
        return "–"
    if a.get("auroc_drop_low") is None:
        return f"{-a['auroc_drop']:+.4f}"
    return f"{-a['auroc_drop']:+.4f} ({-a['auroc_drop_high']:+.3f}…{-a['auroc_drop_low']:+.3f})"
