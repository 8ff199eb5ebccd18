"""The FP32 graph of a bundle: the RUN exported to ONNX, simplified where that keeps it sound, checked against
PyTorch (parity) and against TensorRT's op rules, and described in the manifest (input, outputs, preprocessing,
scores, versions). Only a graph that passes both checks reaches the bundle; otherwise the export stops with every
failure named.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from pathlib import Path

from edge_runtime.backends.base import HEAD_PREFIX, MAP_PREFIX
from edge_runtime.manifest import ENGINES_DIR, Manifest
from edge_runtime.preprocess import preprocess_spec
from export.job import ExportJob
from export.onnx_export import INPUT_NAME, ExportConfig, ExportError, export_onnx, simplify
from export.parity import ParityLimits, ParityReport, check_parity, parity_frames, synthetic_parity_hint
from export.precisions import FILES
from export.trt_ops import TrtReport, check_model
from slsg.model.preprocess import normalization_for

FUSED_PLUGIN = "slsg::GraphAttention"
#: Python AOT plugins arrived in TensorRT 10.9; the "10.x" table row is 10.3, so only its op list applies.
FUSED_TRT_VERSIONS = ("10.x", "11.x")
VERSIONED_PACKAGES = ("slsg", "torch", "onnx", "onnxruntime", "onnxslim", "numpy", "opencv-python-headless")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def choose_graph(candidates: list[tuple[str, Path]], deploy, frames, source: str, versions: tuple[str, ...],
                 plugin_ops: tuple[str, ...], notes: list[str],
                 limits: ParityLimits | None = None) -> tuple[str, Path, ParityReport, TrtReport]:
    """The first candidate graph that passes parity and the op check; else an error naming every failure (and what
    to do when parity failed on synthetic frames)."""
    failures, hint = [], None
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
        hint = hint or (None if parity.ok else synthetic_parity_hint(source))
    raise ExportError("export failed: " + "\n".join(failures + ([hint] if hint else [])))


def fused_checks(fused: Path, tmp: Path, deploy, frames, source: str, plugin_ops: tuple[str, ...],
                 notes: list[str], limits: ParityLimits | None = None) -> tuple[str, Path, ParityReport, TrtReport]:
    """ONNX Runtime cannot run the plugin node: parity is measured on the standard graph of the same weights,
    and the fused graph is checked for the TensorRT lines that can load the plugin (≥ 10.9)."""
    standard = tmp / "standard.onnx"
    export_onnx(deploy, standard, ExportConfig(simplify=False))
    parity = check_parity(deploy, standard, frames, source + " (standard-op twin of the fused graph)", limits)
    if not parity.ok:
        hint = synthetic_parity_hint(source)
        raise ExportError(f"export failed: parity failed ({parity.failure()})" + (f"\n{hint}" if hint else ""))
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
    """The manifest's FP32 part; the precision steps and the last step complete it."""
    mc = run.model_config
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
        "models": {"fp32": FILES["fp32"]},
        "export": {"config": cfg.to_dict(), "run": str(Path(run.root).resolve()), "parity": parity.to_dict(),
                   "tensorrt_ops": trt.summary(), "notes": notes},
    }
    if plugin_ops:
        manifest["plugins"] = [FUSED_PLUGIN]
    return manifest


def export_graph(job: ExportJob) -> None:
    """RUN → `model.onnx` in the staged bundle: exported, simplified if that passes, parity and op check."""
    opts, mc = job.options, job.run.model_config
    job.say(f"exporting {mc.backbone} at {mc.hw[0]}×{mc.hw[1]} (H×W), heads {'+'.join(job.deploy.head_names)} "
            f"(opset {opts.export.opset})")
    raw = job.tmp / "exported.onnx"
    job.plugin_ops = export_onnx(job.deploy, raw, opts.export)
    frames, source = parity_frames(mc.hw, opts.parity_count, opts.parity_images, job.data)
    job.say(f"parity on {source}")
    if job.plugin_ops:
        graph, chosen, job.parity, job.trt = fused_checks(raw, job.tmp, job.deploy, frames, source,
                                                          tuple(job.plugin_ops), job.notes, opts.parity)
    else:
        candidates = [("exported", raw)]
        if opts.export.simplify:
            slim = job.tmp / "simplified.onnx"
            skipped = simplify(raw, slim)
            if skipped:
                job.notes.append(skipped)
            else:
                candidates.insert(0, ("simplified", slim))
        graph, chosen, job.parity, job.trt = choose_graph(candidates, job.deploy, frames, source,
                                                          opts.trt_versions, (), job.notes, opts.parity)
    job.stage.mkdir(parents=True)
    shutil.copyfile(chosen, job.stage / FILES["fp32"])
    (job.stage / ENGINES_DIR).mkdir()
    job.manifest = Manifest.new(build_manifest(job.run, job.deploy, opts.export, job.threshold, job.parity,
                                               job.trt, job.plugin_ops, job.notes))
    job.manifest.export["graph"] = graph
    job.models = {"fp32": FILES["fp32"]}
