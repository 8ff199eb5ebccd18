"""`slsg export RUN -o model.slsg`, top to bottom.

The RUN and its dataset are opened once (`open_job`); then each step in `STEPS` reads and extends one `ExportJob`:

1. `export.graph.export_graph` — ONNX, parity against PyTorch, TensorRT's op rules → `model.onnx`
2. `export.gates` — the gate's images and FP32's outputs on them; INT8 (two files), each INT8 file as OpenVINO
   runs it, FP16, bf16; the TensorRT lint of every file kept
3. `export.thresholds.set_thresholds` — a threshold per model, held-out false-reject rates
4. `write_manifest` — the manifest, written once and read back by the runtime's own loader

The bundle is assembled in a sibling staging folder and moved into place only once it loads: an export that
fails half-way (parity, op support, a full disk) leaves no bundle that looks complete, and `--force` never removes
the old bundle before the new one is good. Once the FP32 model is sound the bundle is always written: a precision
that fails its gate or the TensorRT lint is left out and recorded (`BundleResult.left_out`, `export.left_out`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import MANIFEST_NAME
from edge_runtime.manifest import write_manifest as write_manifest_file
from export import gates, graph, thresholds
from export.job import BundleOptions, BundleResult, ExportJob, PrecisionReport
from export.onnx_export import ExportError, deploy_for_run
from export.run_data import open_run_data
from slsg.checkpoint import open_run

#: What a bundle exported with --no-threshold carries: no good-score evidence (n_good 0) and a value no
#: probability score exceeds, so nothing is judged NG until a real threshold is set.
NO_THRESHOLD = {"value": 1.0, "false_reject_rate": 0.0, "n_good": 0, "quantiles": {},
                "note": "exported with --no-threshold: no verdicts until a threshold is set"}

Step = Callable[[ExportJob], None]


def write_manifest(job: ExportJob) -> None:
    """The manifest completed from what the steps found, written once, and read back by the runtime's loader."""
    report, manifest = job.report, job.manifest
    manifest.models, manifest.heads = dict(job.models), dict(job.heads)
    manifest.export["seconds"] = {name: round(s, 1) for name, s in job.seconds.items()}  # the steps before this one
    if report.thresholds:
        manifest.thresholds, manifest.threshold = report.thresholds, report.thresholds["fp32"]
    if not job.plugin_ops:
        manifest.export.update({
            "tensorrt_lint": report.lint, "gate": report.gate, "held_out": report.held_out,
            "held_out_shift": report.held_out_shift, "asked": job.options.asked,
            "left_out": {p: lo.to_dict() for p, lo in report.left_out.items()}})
    write_manifest_file(job.stage, manifest)
    job.manifest = load_bundle(job.stage).manifest


#: The export, in order; each step reads what the ones before it left in the job.
STEPS: tuple[Step, ...] = (
    graph.export_graph,
    gates.open_gate,
    gates.add_int8,
    gates.gate_openvino_int8,
    gates.add_fp16,
    gates.add_bf16,
    gates.lint_models,
    thresholds.set_thresholds,
    write_manifest,
)
#: ONNX Runtime cannot run (so cannot calibrate, gate or score) the fused-plugin graph: it gets the graph only.
PLUGIN_STEPS: tuple[Step, ...] = (graph.export_graph, write_manifest)


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


def open_job(run_dir: Path, out: Path, options: BundleOptions, say: Callable[[str], None], tmp: Path) -> ExportJob:
    """The RUN, its threshold and its dataset, opened once; refuses what cannot make a bundle before any work."""
    run = open_run(Path(run_dir))
    threshold = run_threshold(run, options.no_threshold)
    check_target(out, options.force)
    if options.export.fused_graph_attention and options.asked:
        raise ExportError("--fp16/--int8/--bf16 need the standard-op graph (ONNX Runtime calibrates and gates them): "
                          "export them without --fused-graph-attention")
    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    return ExportJob(run=run, out=out, stage=stage, tmp=tmp, options=options, say=say, threshold=threshold,
                     data=open_run_data(run.config), deploy=deploy_for_run(Path(run_dir)),
                     report=PrecisionReport())


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
    """RUN → a verified bundle at `out` (the steps above); only an unsound FP32 model raises (no bundle)."""
    t0 = time.perf_counter()
    options, out = options or BundleOptions(), Path(out)
    with tempfile.TemporaryDirectory(prefix="slsg-export-") as tmp:
        job = open_job(run_dir, out, options, say, Path(tmp))
        try:
            for step in STEPS:
                if not job.plugin_ops or step in PLUGIN_STEPS:
                    start = time.perf_counter()
                    step(job)
                    job.seconds[step.__name__] = time.perf_counter() - start
            _swap_into_place(job.stage, out)
        finally:
            shutil.rmtree(job.stage, ignore_errors=True)
    precisions = None if job.plugin_ops else job.report
    return BundleResult(out, job.manifest, job.parity, job.trt, job.notes, time.perf_counter() - t0, precisions,
                        dict(job.seconds))
