"""Choosing a backend for a bundle: the fastest one this machine can run, or the one asked for."""

from __future__ import annotations

import importlib
import logging
import platform
from pathlib import Path

from edge_runtime.backends.base import Backend, BackendError
from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, best_providers
from edge_runtime.bundle import Bundle

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "onnx-int8", "onnx-fp16", "trt-fp16", "trt-int8")
#: ONNX backend name → bundle model precisions to try, first present wins.
_ONNX_MODELS = {"onnx": ("fp32",), "onnx-int8": ("int8-cpu", "int8"), "onnx-fp16": ("fp16",)}
_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


def is_x86() -> bool:
    return platform.machine().lower() in _X86


def _onnx(bundle: Bundle, backend: str, threads: int | None) -> OnnxRuntimeBackend:
    models = bundle.models
    for precision in _ONNX_MODELS[backend]:
        if precision in models:
            return OnnxRuntimeBackend(
                models[precision],
                threads=threads,
                name=f"{backend}:{precision}",
                trt_cache_dir=bundle.engines_dir / "ort-trt",
                model=precision,
            )
    wanted = " or ".join(f"model.{p}.onnx" for p in _ONNX_MODELS[backend])
    hint = "--int8" if backend == "onnx-int8" else "--fp16"
    raise BackendError(
        f"backend {backend} needs {wanted} in {bundle.root}, which has only "
        f"{', '.join(sorted(models)) or 'no models'}: re-export with `slsg export ... {hint}` "
        "or choose another --backend"
    )


def _tensorrt_module():
    """The TensorRT backend lives in `edge_runtime.tensorrt`; it may be absent or unable to load TensorRT."""
    return importlib.import_module("edge_runtime.tensorrt")


def _cached_engine(bundle: Bundle, precision: str) -> Path | None:
    return _tensorrt_module().find_cached_engine(bundle, precision)


def _tensorrt(bundle: Bundle, precision: str) -> Backend:
    no_trt = (
        f"backend trt-{precision} needs TensorRT, which cannot be loaded here ({{}}): on a Jetson it "
        "comes with JetPack; elsewhere use --backend onnx"
    )
    try:
        module = _tensorrt_module()
        available = getattr(module, "tensorrt_available", lambda: True)()
        engine = _cached_engine(bundle, precision) if available else None
    except ImportError as e:
        raise BackendError(no_trt.format(e)) from None
    if not available:
        raise BackendError(no_trt.format("no tensorrt Python package"))
    if engine is None:
        raise BackendError(
            f"no trt-{precision} engine for this device in {bundle.engines_dir}: "
            f"build one with `slsg-edge build {bundle.root} --{precision}`"
        )
    try:
        return _open_tensorrt(engine)
    except RuntimeError as e:  # TensorRTError: CUDA binding, engine or plugin refused (it closed itself)
        raise BackendError(f"backend trt-{precision} could not open {engine.name}: {e}") from None


def _open_tensorrt(engine: Path) -> Backend:
    """A TensorRT backend; one that fails while opening releases what it opened before raising, and the
    caller owns (and closes) the one returned."""
    return _tensorrt_module().TensorRTBackend(engine)


def _auto(bundle: Bundle, threads: int | None) -> Backend:
    for precision in ("int8", "fp16"):
        try:
            engine = _cached_engine(bundle, precision)
        except ImportError as e:
            log.info("TensorRT not usable here (%s); using ONNX Runtime", e)
            break
        if engine is not None:
            try:
                backend = _open_tensorrt(engine)
            except RuntimeError as e:  # e.g. no working CUDA binding: say why and fall back
                log.warning("cached TensorRT %s engine %s could not be opened (%s); trying the next", precision,
                            engine, e)
                continue
            log.info("using the cached TensorRT %s engine %s", precision, engine)
            return backend
    cpu_only = best_providers()[0] == "CPUExecutionProvider"
    if cpu_only and is_x86() and "int8-cpu" in bundle.models:
        return _onnx(bundle, "onnx-int8", threads)
    return _onnx(bundle, "onnx", threads)


def select_backend(bundle: Bundle, backend: str = "auto", threads: int | None = None) -> Backend:
    """auto: a cached TensorRT engine for this device, else int8-cpu ONNX on an x86 CPU, else fp32 ONNX."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return _auto(bundle, threads)
    if backend.startswith("trt-"):
        return _tensorrt(bundle, backend.removeprefix("trt-"))
    return _onnx(bundle, backend, threads)
