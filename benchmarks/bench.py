"""`slsg bench`: reference-style PyTorch eager vs our runtime backends, in one alternating run.

Latency (per stage, end-to-end and engine-only), the roofline (MACs from `slsg.model.macs`, each library's GEMM
peaks measured at the same thread count *inside* the alternating run), per-op profiles (ONNX Runtime, OpenVINO),
accuracy parity of every case, and the goals.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.eager import eager_case
from benchmarks.parity import evaluate_backends, open_parity_set
from benchmarks.roofline import PEAK_PREFIX, floors_for, gemm_runners, peak_cases, peaks_from_timings
from edge_runtime.bench import (
    DEFAULT_BACKENDS,
    DEFAULTS,
    op_profile,
    open_backends,
    runtime_cases,
)
from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import Manifest
from edge_runtime.preprocess import bench_frame, prepare
from edge_runtime.timing import machine_facts, peak_rss_mb, run_alternating, take_turns_fairly
from export.job import BundleOptions
from export.onnx_export import ExportError
from export.pipeline import write_bundle
from slsg.checkpoint import load_run
from slsg.inference import TorchPredictor
from slsg.model import ModelConfig, build_model
from slsg.model.macs import count_macs

TORCH = "torch"


@dataclass
class BenchConfig:
    threads: int = DEFAULTS.threads
    warmup: int = DEFAULTS.warmup
    iterations: int = DEFAULTS.iterations
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    gemm_n: int = DEFAULTS.gemm_n
    gemm_repeats: int = 10  # unused since the peaks are interleaved with the rounds (kept: configs name it)
    profile_runs: int = DEFAULTS.profile_runs
    parity: bool = True
    pixel: bool = False
    data: Path | None = None
    category: str | None = None
    run: Path | None = None  # the RUN behind a bundle, for the PyTorch side
    bundle: Path | None = None  # a bundle made from the RUN target (else one is exported to a temp folder)
    int8: bool = True  # when exporting: also write INT8 models, if calibration is available
    image: Path | None = None
    notes: list[str] = field(default_factory=list)


def is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def export_for_bench(run_dir: Path, out: Path, int8: bool, say: Callable[[str], None]) -> tuple[Path, list[str]]:
    """RUN → bundle with `slsg export`'s writer, INT8 included unless its accuracy gate refuses it."""

    notes = []
    if int8:
        try:
            result = write_bundle(run_dir, out, BundleOptions(int8=True, calib_size=64, force=True), say=say)
            notes += [f"INT8 not benchmarked: {'; '.join(lo.reasons)}" for lo in result.left_out.values()]
            return out, notes
        except ExportError as exc:
            notes.append(f"INT8 not benchmarked: {exc}")
    write_bundle(run_dir, out, BundleOptions(force=True), say=say)
    return out, notes


def resolve(target: Path, cfg: BenchConfig, stack: ExitStack, say: Callable[[str], None]):
    """(model or None, bundle folder, notes) for a RUN or a bundle target."""

    notes: list[str] = []
    run_dir = target if is_run(target) else cfg.run
    model = load_run(run_dir)[1] if run_dir is not None else None
    if is_run(target):
        bundle = cfg.bundle
        if bundle is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="slsg-bench-")))
            bundle, notes = export_for_bench(target, tmp / "model.slsg", cfg.int8, say)
    else:
        bundle = target
        if model is None:
            notes.append("no RUN given (--run): the PyTorch side is skipped; parity is against ONNX fp32")
    return model, bundle, notes


def model_macs(model, manifest: Manifest) -> int:
    """MACs of one 1×3×H×W forward, counted by the repo's counter (weights do not change the count)."""

    if model is None:
        model = build_model(ModelConfig.from_dict(manifest.model)).eval()
    return count_macs(model, torch.zeros(1, 3, *model.cfg.hw))["total"]


def roofline(report: dict, macs: int, peaks) -> dict:
    cases = report["cases"]
    floors = floors_for([n for n in cases if not n.endswith(" (engine)")], macs, peaks)
    for name, f in floors.items():
        f["e2e_multiple"] = cases[name]["end_to_end"]["p50_ms"] / f["floor_ms"]
        engine = cases.get(f"{name} (engine)")
        if engine is not None:
            f["engine_multiple"] = engine["end_to_end"]["p50_ms"] / f["floor_ms"]
        elif name == TORCH:
            f["engine_multiple"] = cases[name]["stages"]["infer"]["p50_ms"] / f["floor_ms"]
    return {"macs": macs, "gmacs": macs / 1e9, "peaks": peaks.to_dict(), "backends": floors}


def speedups(cases: dict) -> dict[str, float]:
    if TORCH not in cases:
        return {}
    base = cases[TORCH]["end_to_end"]["p50_ms"]
    return {n: base / c["end_to_end"]["p50_ms"] for n, c in cases.items()}


def goals(report: dict) -> list[dict]:
    """The issue's goals, measured: speed-ups vs eager, distance to the floor, INT8 accuracy."""
    out = []
    sp, floors = report.get("speedup_vs_torch", {}), report.get("roofline", {}).get("backends", {})
    par = (report.get("parity") or {}).get("backends", {})

    def add(goal: str, value, ok) -> None:
        if value is not None:
            out.append({"goal": goal, "value": float(value), "met": bool(ok(value))})

    add("ORT FP32 end-to-end speed-up vs eager ≥ 1.5", sp.get("onnx"), lambda v: v >= 1.5)
    add("ORT FP32 end-to-end / fp32 floor ≤ 1.15", floors.get("onnx", {}).get("e2e_multiple"), lambda v: v <= 1.15)
    add("ORT INT8 end-to-end speed-up vs eager ≥ 3.5", sp.get("onnx-int8"), lambda v: v >= 3.5)
    if report.get("parity", {}).get("reference") == TORCH:
        add("ORT INT8 map correlation vs PyTorch ≥ 0.99", par.get("onnx-int8", {}).get("map_correlation"),
            lambda v: v >= 0.99)
        add("ORT INT8 AUROC drop ≤ 1 point", par.get("onnx-int8", {}).get("auroc_drop_points"), lambda v: v <= 1.0)
    cpu = {n: v for n, v in sp.items() if n in CPU_CASES}
    if cpu:
        best = max(cpu, key=cpu.get)
        add(f"best CPU path ({best}) end-to-end speed-up vs eager ≥ 6", cpu[best], lambda v: v >= 6.0)
        if report.get("parity", {}).get("reference") == TORCH and best in par:
            add(f"best CPU path ({best}) map correlation vs PyTorch ≥ 0.99", par[best].get("map_correlation"),
                lambda v: v >= 0.99)
    cases = report.get("cases", {})
    for f32, i8 in (("onnx", "onnx-int8"), ("openvino", "openvino-int8")):
        if f32 in cases and i8 in cases:
            add(f"{i8} end-to-end speed-up vs {f32} ≥ 1.5 (Lite0 goal)",
                cases[f32]["end_to_end"]["p50_ms"] / cases[i8]["end_to_end"]["p50_ms"], lambda v: v >= 1.5)
    for name, o in overheads(cases).items():
        add(f"{name} runtime overhead (end-to-end − engine) / engine ≤ 10 %", o, lambda v: v <= 0.10)
    return out


#: Runtime cases that run on this CPU (TensorRT does not).
CPU_CASES = ("onnx", "onnx-int8", "onnx-fp16", "openvino", "openvino-bf16", "openvino-int8")


def overheads(cases: dict) -> dict[str, float]:
    """(end-to-end p50 − engine-only p50) / engine-only p50: what the runtime adds to the bare inference
    (pre-processing, copies, scoring, verdict), for every case that has an engine-only twin."""
    out = {}
    for name, c in cases.items():
        engine = cases.get(f"{name} (engine)")
        if engine is not None:
            e = engine["end_to_end"]["p50_ms"]
            out[name] = (c["end_to_end"]["p50_ms"] - e) / e
    return out


def run_bench(target: Path, cfg: BenchConfig, say: Callable[[str], None] = lambda _: None) -> tuple[dict, dict]:
    """(report, raw end-to-end ms per case). The report is JSON-ready."""

    take_turns_fairly()
    torch.set_num_threads(cfg.threads)
    with ExitStack() as stack:
        model, bundle_dir, notes = resolve(Path(target), cfg, stack, say)
        bundle = load_bundle(bundle_dir)
        opened, skipped = open_backends(bundle, list(cfg.backends), cfg.threads)
        frame = bench_frame(bundle.size, cfg.image)
        cases = [eager_case(model, frame, TORCH)] if model is not None else []
        cases += [c for n, be in opened.items() for c in runtime_cases(n, be, frame, bundle.threshold.value)]
        gemms = peak_cases(gemm_runners(cfg.threads, cfg.gemm_n))
        say(f"timing {len(cases)} cases and {len(gemms)} GEMM peaks ({cfg.gemm_n}², {cfg.threads} threads): "
            f"{cfg.warmup} warm-up + {cfg.iterations} rounds, alternating")
        everything = run_alternating(cases + gemms, cfg.warmup, cfg.iterations)
        timings = {n: t for n, t in everything.items() if not n.startswith(PEAK_PREFIX)}
        peaks = peaks_from_timings(everything, cfg.gemm_n, cfg.threads)
        batch = frame_batch(frame, bundle.size)
        profiles = {}
        for n, be in opened.items():
            prof = op_profile(be, batch, cfg.threads, cfg.profile_runs) if cfg.profile_runs > 0 else None
            if prof is not None:
                profiles[n] = prof
        report = {
            "title": str(target),
            "target": str(target),
            "bundle": str(bundle.root),
            "weights": "RUN checkpoint" if model is not None else "bundle only",
            "size": list(bundle.size),
            "warmup": cfg.warmup,
            "iterations": cfg.iterations,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "machine": machine_facts(cfg.threads, ("numpy", "onnxruntime", "openvino", "cv2", "torch", "onnx")),
            "backends": {n: {"name": be.name, "providers": list(getattr(be, "providers", [])),
                             "model": str(getattr(be, "path", ""))} for n, be in opened.items()},
            "skipped": skipped,
            "cases": {n: t.summary() for n, t in timings.items()},
            "profiles": profiles,
            "notes": [*cfg.notes, *notes],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: PyTorch's workers spin between cases)"),
        }
        report["speedup_vs_torch"] = speedups(report["cases"])
        report["roofline"] = roofline(report, model_macs(model, bundle.manifest), peaks)
        if cfg.parity and (model is not None or opened):
            say("accuracy parity")
            category = open_parity_set(cfg.data, cfg.category, bundle.size, stack)
            predictors = {TORCH: TorchPredictor(model)} if model is not None else {}
            predictors.update(opened)
            reference = TORCH if model is not None else next(iter(opened))
            report["parity"] = evaluate_backends(predictors, category, bundle.size, reference, pixel=cfg.pixel)
        report["goals"] = goals(report)
        report["peak_rss_mb"] = peak_rss_mb()
    raw = {n: t.end_to_end_ms for n, t in timings.items()}
    return report, raw


def frame_batch(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return prepare(frame, size)[None]
