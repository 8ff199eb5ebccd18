"""Latency of every backend this device can run, side by side, without torch (`slsg-edge bench`'s computing).

Each backend is timed end-to-end (frame → prepare → inference → score and verdict) and engine-only (the
bare session or engine call on a prepared input), all cases alternating in one process (see
`edge_runtime.timing`). ONNX Runtime models also get a per-op profile (top op types), taken after the timing
so the profiler's own cost never touches the latency numbers. `slsg bench` (benchmarks/bench.py) reuses these
functions; the command and its table live in `edge_runtime/commands/bench.py`.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_runtime.backends import BackendError, input_size_of, select_backend
from edge_runtime.backends.base import model_of
from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN, session_options
from edge_runtime.backends.openvino_backend import compile_cpu, openvino_source
from edge_runtime.bundle import load_bundle
from edge_runtime.preprocess import bench_frame, prepare, to_bgr_uint8
from edge_runtime.timing import Case, machine_facts, peak_rss_mb, run_alternating, take_turns_fairly, timed

#: What `--backends` tries by default; a backend whose model or engine is missing is skipped, with why.
DEFAULT_BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8", "trt-fp16", "trt-int8")


@dataclass(frozen=True)
class TimingDefaults:
    """The defaults of both bench commands and `benchmarks.bench.BenchConfig`, in one place that imports no torch
    (the CLIs read them when their options are declared)."""

    threads: int = 2                # `slsg bench`; `slsg-edge bench` leaves threads to each library unless asked
    warmup: int = 10
    iterations: int = 50
    profile_runs: int = 10
    gemm_n: int = 2048              # AMX/VNNI reach their peak only on large products: 1024² read them at 0.7×


DEFAULTS = TimingDefaults()


def _engine_step(backend, batch: np.ndarray):
    """The bare engine call: ORT `session.run`, TensorRT / OpenVINO `infer_only()` (no copies)."""
    if hasattr(backend, "infer_only"):
        backend.run(batch)  # infer_only re-runs the inputs of the last run
        return lambda: {"infer": backend.infer_only() * 1e3}
    if hasattr(backend, "session"):
        session, feed = backend.session, {"image": batch}
        return lambda: {"infer": timed(lambda: session.run(None, feed))[1]}
    return None


def runtime_cases(name: str, backend, frame: np.ndarray, threshold: float) -> list[Case]:
    """End-to-end (pre / infer / post timed inside) and, where the backend allows, engine-only."""

    size = input_size_of(backend)

    def end_to_end() -> dict[str, float]:
        batch, pre = timed(lambda: prepare(to_bgr_uint8(frame), size)[None])
        out, infer = timed(lambda: backend.run(batch))
        _, post = timed(lambda: bool(float(out.score[0]) > threshold))
        return {"pre": pre, "infer": infer, "post": post}

    cases = [Case(name, end_to_end, "end-to-end")]
    engine = _engine_step(backend, prepare(to_bgr_uint8(frame), size)[None])
    if engine is not None:
        cases.append(Case(f"{name} (engine)", engine, "engine-only"))
    return cases


def open_backends(bundle, names: list[str], threads: int | None) -> tuple[dict, dict[str, str]]:
    """{name: backend} for those that open here, and {name: why not} for the rest."""

    opened, skipped = {}, {}
    for name in names:
        try:
            opened[name] = select_backend(bundle, name, threads)
        except BackendError as e:
            skipped[name] = str(e)
    return opened, skipped


def profile_events_by_op(events: list[dict], top: int = 10) -> dict:
    """Aggregate an ORT profile (enable_profiling JSON) by op type, per run, excluding the first run."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) < 2:
        raise ValueError("the profile needs at least two model runs (the first is a warm-up and is dropped)")
    cutoff = runs[0]["ts"] + runs[0]["dur"]
    measured = len(runs) - 1
    per_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time") or e["ts"] < cutoff:
            continue
        op = e.get("args", {}).get("op_name", "?")
        per_op[op] += e["dur"] / 1e3
        count[op] += 1
    total = sum(per_op.values())
    run_ms = sum(r["dur"] for r in runs[1:]) / 1e3 / measured
    ops = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {
        "runs": measured,
        "run_ms": run_ms,
        "kernel_ms": total / measured,
        "top_ops": [
            {"op": op, "ms": ms / measured, "share": ms / total if total else 0.0,
             "nodes": count[op] // measured}
            for op, ms in ops[:top]
        ],
    }


def openvino_op_profile(backend, batch: np.ndarray, runs: int = 10, top: int = 10) -> dict:
    """OpenVINO's per-node counters (`PERF_COUNT`) of the backend's model, aggregated by executed layer type and
    precision ("Convolution i8"), first run dropped; a separate compiled model of the same graph, so the timed one is
    untouched."""

    config = {"PERFORMANCE_HINT": backend.hint, "INFERENCE_NUM_THREADS": backend.threads, "PERF_COUNT": True,
              "INFERENCE_PRECISION_HINT": backend.compiled.get_property("INFERENCE_PRECISION_HINT")}
    source, _ = openvino_source(backend.path, backend.precision, backend.head)  # the graph the timed model runs
    request = compile_cpu(source, config).create_infer_request()
    request.infer({"image": batch})
    per_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    total_run = 0.0
    for _ in range(max(1, runs)):
        _, ms = timed(lambda: request.infer({"image": batch}))
        total_run += ms
        for info in request.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            op = f"{info.node_type} {info.exec_type.rsplit('_', 1)[-1].lower()}"
            per_op[op] += info.real_time.total_seconds() * 1e3
            count[op] += 1
    runs = max(1, runs)
    total = sum(per_op.values())
    ops = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {"runs": runs, "run_ms": total_run / runs, "kernel_ms": total / runs, "library": "openvino",
            "top_ops": [{"op": op, "ms": ms / runs, "share": ms / total if total else 0.0, "nodes": count[op] // runs}
                        for op, ms in ops[:top]]}


def op_profile(backend, batch: np.ndarray, threads: int | None, runs: int = 10) -> dict | None:
    """The per-op profile of whichever library the backend runs (ONNX Runtime or OpenVINO); None for others."""
    if hasattr(backend, "compiled") and hasattr(backend, "hint"):
        return openvino_op_profile(backend, batch, runs)
    if hasattr(backend, "session") and str(getattr(backend, "path", "")).endswith(".onnx"):
        return ort_op_profile(Path(backend.path), batch, threads, runs, as_written=model_of(backend) in AS_WRITTEN)
    return None


def ort_op_profile(model: Path, batch: np.ndarray, threads: int | None, runs: int = 10, top: int = 10,
                   as_written: bool = False) -> dict:
    """Run `model` under ONNX Runtime's profiler (CPU), as the line runs it (`as_written`: `AS_WRITTEN`), and
    aggregate kernel time by op type."""
    with tempfile.TemporaryDirectory(prefix="slsg-ort-profile-") as tmp:
        opts = session_options(threads or 0, as_written)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, {"image": batch})
        events = json.loads(Path(session.end_profiling()).read_text())
    return profile_events_by_op(events, top)


def bench_bundle(
    bundle_dir: Path,
    backends: list[str],
    threads: int | None,
    warmup: int,
    iterations: int,
    image: Path | None = None,
    profile_runs: int = 10,
) -> dict:
    """Time every backend that opens; the report's `cases` come from `CaseTimings.summary()`."""

    take_turns_fairly()

    bundle = load_bundle(bundle_dir)
    opened, skipped = open_backends(bundle, backends, threads)
    frame = bench_frame(bundle.size, image)
    cases = [c for name, be in opened.items() for c in runtime_cases(name, be, frame, bundle.threshold.value)]
    timings = run_alternating(cases, warmup, iterations) if cases else {}
    profiles = {}
    batch = prepare(frame, bundle.size)[None]
    for name, be in opened.items():
        prof = op_profile(be, batch, threads, profile_runs) if profile_runs > 0 else None
        if prof is not None:
            profiles[name] = prof

    return {
        "bundle": str(bundle.root),
        "size": list(bundle.size),
        "warmup": warmup,
        "iterations": iterations,
        "frame": str(image) if image else "synthetic (seeded blur noise)",
        "machine": machine_facts(threads, ("numpy", "onnxruntime", "openvino", "cv2")),
        "backends": {n: {"name": be.name, "providers": list(getattr(be, "providers", [])),
                         "model": str(getattr(be, "path", ""))} for n, be in opened.items()},
        "skipped": skipped,
        "cases": {n: t.summary() for n, t in timings.items()},
        "profiles": profiles,
        "peak_rss_mb": peak_rss_mb(),
    }
