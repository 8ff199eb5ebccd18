"""A RUN folder → a verified bundle (`model.slsg/`): ONNX, manifest, room for INT8/FP16 models and engines.

The bundle is assembled in a sibling staging folder, verified with the runtime's own `load_bundle`, and only
then moved into place: an export that fails half-way (parity, op support, a full disk) leaves no bundle that
looks complete, and `--force` never removes the old bundle before the new one is good. Once the FP32 model is
sound the bundle is always written: an INT8/FP16 model that fails its gate or the TensorRT lint is left out
and recorded (`BundleResult.left_out`, manifest `export.left_out`).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from edge_runtime.backends.base import HEAD_PREFIX, MAP_PREFIX
from edge_runtime.bundle import ENGINES_DIR, MANIFEST_NAME, load_bundle, write_manifest
from edge_runtime.preprocess import preprocess_spec
from export.onnx_export import (
    INPUT_NAME,
    ExportConfig,
    ExportError,
    deploy_for_run,
    export_onnx,
    simplify,
)
from export.parity import DEFAULT_IMAGES, ParityLimits, ParityReport, check_parity, parity_frames
from export.precisions import PrecisionOptions, PrecisionReport, add_precisions
from export.trt_ops import TARGETS, TrtReport, check_model

MODEL_FILE = "model.onnx"
FUSED_PLUGIN = "slsg::GraphAttention"
#: Python AOT plugins arrived in TensorRT 10.9; the "10.x" table row is 10.3, so only its op list applies.
FUSED_TRT_VERSIONS = ("10.x", "11.x")
#: What a bundle exported with --no-threshold carries: no good-score evidence (n_good 0) and a value no
#: probability score exceeds, so nothing is judged NG until a real threshold is set.
NO_THRESHOLD = {"value": 1.0, "false_reject_rate": 0.0, "n_good": 0, "quantiles": {},
                "note": "exported with --no-threshold: no verdicts until a threshold is set"}
VERSIONED_PACKAGES = ("slsg", "torch", "onnx", "onnxruntime", "onnxslim", "numpy", "opencv-python-headless")


@dataclass
class BundleOptions(PrecisionOptions):
    """Everything `slsg export` can be asked besides RUN and OUT: the extra precisions' options and these."""

    export: ExportConfig = field(default_factory=ExportConfig)
    parity_images: Path | None = None
    parity_count: int = DEFAULT_IMAGES
    no_threshold: bool = False
    force: bool = False
    parity: ParityLimits = field(default_factory=ParityLimits)  # what a correct export looks like (recorded)
    trt_versions: tuple[str, ...] = TARGETS

    def precision_options(self) -> PrecisionOptions:
        return PrecisionOptions(**{f.name: getattr(self, f.name) for f in fields(PrecisionOptions)})


@dataclass
class BundleResult:
    root: Path
    manifest: dict
    parity: ParityReport
    trt: TrtReport
    notes: list[str]
    seconds: float
    precisions: PrecisionReport | None = None

    @property
    def left_out(self) -> dict:
        """Precisions asked for and not written ({precision: LeftOut}); empty when the bundle is complete."""
        return self.precisions.left_out if self.precisions is not None else {}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def run_threshold(run, no_threshold: bool) -> dict:
    """The RUN's threshold (with its good-score quantiles), or the explicit no-threshold record."""
    threshold = run.threshold
    if threshold is not None:
        return threshold.to_dict()
    if no_threshold:
        return dict(NO_THRESHOLD)
    raise ExportError(f"{run.root} has no threshold in config.json, so the bundle could not tell OK from NG. "
                      "Set one from good validation images (`slsg train` does it when the dataset has "
                      "validation/good images or holds out a slice), or export anyway with --no-threshold")


def check_target(out: Path, force: bool) -> None:
    """Refuse to overwrite unless --force, and never delete something that is not a bundle."""
    if not out.exists():
        return
    if not force:
        raise ExportError(f"{out} already exists: choose another -o or pass --force to replace it")
    if not out.is_dir():
        raise ExportError(f"{out} is a file, not a bundle folder: remove it yourself or choose another -o")
    if not (out / MANIFEST_NAME).is_file() and any(out.iterdir()):
        raise ExportError(f"{out} is a non-empty folder without {MANIFEST_NAME}, not a bundle: --force "
                          "replaces only bundles; choose another -o")


def choose_graph(candidates: list[tuple[str, Path]], deploy, frames, source: str, versions: tuple[str, ...],
                 plugin_ops: tuple[str, ...], notes: list[str],
                 limits: ParityLimits | None = None) -> tuple[str, Path, ParityReport, TrtReport]:
    """The first candidate graph that passes parity and the op check; else an error naming every failure."""
    failures = []
    for label, path in candidates:
        parity = check_parity(deploy, path, frames, source, limits)
        trt = check_model(path, versions, plugin_ops)
        if parity.ok and trt.ok:
            if failures:
                notes.append(f"kept the {label} graph: " + "; ".join(failures))
            return label, path, parity, trt
        why = []
        if not parity.ok:
            why.append(f"parity failed ({parity.failure()})")
        if not trt.ok:
            why.append("TensorRT op check failed:\n" + trt.message())
        failures.append(f"{label} graph: " + "; ".join(why))
    raise ExportError("export failed: " + "\n".join(failures))


def fused_checks(fused: Path, tmp: Path, deploy, frames, source: str, plugin_ops: tuple[str, ...],
                 notes: list[str], limits: ParityLimits | None = None) -> tuple[str, Path, ParityReport, TrtReport]:
    """ONNX Runtime cannot run the plugin node: parity is measured on the standard graph of the same weights,
    and the fused graph is checked for the TensorRT lines that can load the plugin (≥ 10.9)."""
    standard = tmp / "standard.onnx"
    export_onnx(deploy, standard, ExportConfig(simplify=False))
    parity = check_parity(deploy, standard, frames, source + " (standard-op twin of the fused graph)", limits)
    if not parity.ok:
        raise ExportError(f"export failed: parity failed ({parity.failure()})")
    trt = check_model(fused, FUSED_TRT_VERSIONS, plugin_ops)
    if not trt.ok:
        raise ExportError("export failed: TensorRT op check failed:\n" + trt.message())
    notes.append("the fused graph needs TensorRT ≥ 10.9 with the slsg::GraphAttention plugin; ONNX Runtime "
                 "cannot run it (re-export without --fused-graph-attention for ONNX Runtime or older "
                 "TensorRT)")
    return "fused", fused, parity, trt


def output_spec(deploy, n) -> dict:
    """Every graph output, with what it means (the runtime reads `score` and every `score_<head>` alike)."""
    h, w = deploy.model.cfg.hw
    spec = deploy.score_spec()
    out = {"anomaly_map": {"dtype": "float32", "shape": [n, 1, h, w], "meaning": "anomaly probability per pixel"}}
    for name in deploy.output_names[1:]:
        if name.startswith(MAP_PREFIX):
            head = name[len(MAP_PREFIX):]
            out[name] = {"dtype": "float32", "shape": [n, 1, h, w],
                         "meaning": f"the {head} head's own map ({spec[HEAD_PREFIX + head]['kind']} per pixel)"}
            continue
        meaning = ("the decision score the threshold applies to: " + spec["score"]["definition"] if name == "score"
                   else f"the {spec[name]['head']} head's own score ({spec[name]['kind']})")
        out[name] = {"dtype": "float32", "shape": [n], "meaning": meaning}
    return out


def build_manifest(run, deploy, cfg: ExportConfig, threshold: dict, parity: ParityReport, trt: TrtReport,
                   plugin_ops: list[str], notes: list[str]) -> dict:
    mc = run.model_config
    from slsg.model.preprocess import normalization_for

    n = "N" if cfg.dynamic_batch else cfg.batch
    h, w = mc.hw
    manifest = {
        "model": mc.to_dict(),
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": [n, h, w, 3], "layout": "NHWC",
                  "color": "BGR"},
        "outputs": output_spec(deploy, n),
        "preprocess": preprocess_spec((h, w), normalization_for(mc.normalization_name)),
        "scores": deploy.score_spec(),
        "threshold": threshold,
        "thresholds": {"fp32": threshold},
        "data_fingerprint": run.config.get("data"),
        # FP32's out-of-sample good scores per head and of the decision: what `slsg evaluate` compares new goods with
        "good_reference": run.config.get("good_reference"),
        "versions": package_versions(),
        "models": {"fp32": MODEL_FILE},
        "export": {"config": cfg.to_dict(), "run": str(Path(run.root).resolve()), "parity": parity.to_dict(),
                   "tensorrt_ops": trt.summary(), "notes": notes},
    }
    if plugin_ops:
        manifest["plugins"] = [FUSED_PLUGIN]
    return manifest


def _swap_into_place(stage: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        stage.rename(out)


def write_bundle(run_dir: Path, out: Path, options: BundleOptions | None = None,
                 say: Callable[[str], None] = lambda _: None) -> BundleResult:
    """RUN → bundle at `out`: ONNX + parity + TensorRT op check + manifest, verified on read-back; then the
    precisions asked for and a threshold per model file. Only an unsound FP32 model raises (no bundle)."""
    from slsg.checkpoint import open_run

    t0 = time.perf_counter()
    options = options or BundleOptions()
    out = Path(out)
    run = open_run(Path(run_dir))
    threshold = run_threshold(run, options.no_threshold)
    check_target(out, options.force)
    if options.export.fused_graph_attention and (options.fp16 or options.int8 or options.bf16):
        raise ExportError("--fp16/--int8/--bf16 need the standard-op graph (ONNX Runtime calibrates and gates them): "
                          "export them without --fused-graph-attention")
    deploy = deploy_for_run(Path(run_dir))
    notes: list[str] = []
    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(prefix="slsg-export-") as tmp:
            raw = Path(tmp) / "exported.onnx"
            mc = run.model_config
            heads = "+".join(deploy.head_names)
            say(f"exporting {mc.backbone} at {mc.hw[0]}×{mc.hw[1]} (H×W), heads {heads} (opset {options.export.opset})")
            plugin_ops = export_onnx(deploy, raw, options.export)
            frames, source = parity_frames(mc.hw, options.parity_count, options.parity_images, run.config)
            say(f"parity on {source}")
            if plugin_ops:
                graph, chosen, parity, trt = fused_checks(raw, Path(tmp), deploy, frames, source,
                                                          tuple(plugin_ops), notes, options.parity)
            else:
                candidates = [("exported", raw)]
                if options.export.simplify:
                    slim = Path(tmp) / "simplified.onnx"
                    skipped = simplify(raw, slim)
                    if skipped:
                        notes.append(skipped)
                    else:
                        candidates.insert(0, ("simplified", slim))
                graph, chosen, parity, trt = choose_graph(candidates, deploy, frames, source,
                                                          options.trt_versions, (), notes, options.parity)
            stage.mkdir(parents=True)
            shutil.copyfile(chosen, stage / MODEL_FILE)
        (stage / ENGINES_DIR).mkdir()
        manifest = build_manifest(run, deploy, options.export, threshold, parity, trt, plugin_ops, notes)
        manifest["export"]["graph"] = graph
        write_manifest(stage, manifest)
        precisions = None
        if not plugin_ops:  # ONNX Runtime cannot score (or calibrate) the fused plugin graph
            precisions = add_precisions(stage, run, options.precision_options(), options.trt_versions, say)
        manifest = load_bundle(stage).manifest
        _swap_into_place(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BundleResult(out, manifest, parity, trt, notes, time.perf_counter() - t0, precisions)
