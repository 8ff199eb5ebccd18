"""Choosing a backend for a bundle: the fastest one this machine can run, or the one asked for."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from edge_runtime.backends.base import Backend, BackendError
from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, best_providers
from edge_runtime.backends.openvino_backend import OPENVINO_PREFIX, OpenVinoBackend, openvino_available
from edge_runtime.backends.probe import CPU_CANDIDATES, ProbeConfig, probe
from edge_runtime.bundle import Bundle

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "onnx-int8", "onnx-fp16", "openvino", "openvino-bf16", "openvino-int8",
            "trt-fp16", "trt-int8")
#: ONNX backend name → bundle model precisions to try, first present wins.
_ONNX_MODELS = {"onnx": ("fp32",), "onnx-int8": ("int8-u8", "int8-s8"), "onnx-fp16": ("fp16",)}
#: OpenVINO backend name → (its precision, bundle models to try, first present wins). The symmetric TensorRT
#: flavour comes first for INT8: OpenVINO runs it as fast as the u8 one and it is the gated model TensorRT runs.
_OPENVINO_MODELS = {"openvino": ("fp32", ("fp32",)), "openvino-bf16": ("bf16", ("bf16",)),
                    "openvino-int8": ("int8", ("int8-s8", "int8-u8"))}
_HINTS = {"onnx-int8": "--int8", "onnx-fp16": "--fp16", "openvino-int8": "--int8", "openvino-bf16": "--bf16"}


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
    raise _missing(bundle, backend, _ONNX_MODELS[backend])


def _missing(bundle: Bundle, backend: str, precisions: tuple) -> BackendError:
    """No model for `backend`: say which file it needs, and why it is absent when its gate refused it."""
    wanted = " or ".join("a gated bf16 model" if p == "bf16" else f"model.{p}.onnx" for p in precisions)
    refused = [f"{p}: " + "; ".join(lo.get("reasons", []))
               for p, lo in bundle.manifest.left_out.items()
               if p in precisions or (p == "int8" and "int8-u8" in precisions)]
    why = f" (its accuracy gate refused it at export: {' | '.join(refused)})" if refused else ""
    return BackendError(
        f"backend {backend} needs {wanted} in {bundle.root}, which has only "
        f"{', '.join(sorted(bundle.models)) or 'no models'}{why}: re-export with "
        f"`slsg export ... {_HINTS.get(backend, '')}` or choose another --backend"
    )


def _openvino(bundle: Bundle, backend: str, threads: int | None) -> Backend:
    precision, wanted = _OPENVINO_MODELS[backend]
    present = [m for m in wanted if m in bundle.models]
    if not present:
        raise _missing(bundle, backend, wanted)
    if precision != "int8":
        return OpenVinoBackend(bundle.models[present[0]], precision=precision, threads=threads,
                               name=f"{backend}:{present[0]}", model=present[0], head=bundle.head_for(present[0]))
    gated = bundle.manifest.openvino_int8
    if not gated:
        raise BackendError(
            f"backend {backend}: the INT8 models in {bundle.root} were gated on ONNX Runtime only, and OpenVINO "
            "runs Q/DQ its own way (its accuracy can differ): re-export with openvino installed "
            "(pip install 'slsg[openvino]'; `slsg export ... --int8` then gates both), or use --backend onnx-int8"
        )
    for model in present:
        if gated.get(model, {}).get("passed"):
            return openvino_int8(bundle, model, threads, name=f"{backend}:{model}")
    reasons = " | ".join(f"{m}: {'; '.join(gated.get(m, {}).get('reasons', ['not gated']))}" for m in present)
    raise BackendError(f"backend {backend}: no INT8 file in {bundle.root} passed its gate under OpenVINO "
                       f"({reasons}); use --backend onnx-int8 or openvino")


def openvino_int8(bundle: Bundle, model: str, threads: int | None, name: str = "openvino-int8") -> Backend:
    """The INT8 file `model` as OpenVINO runs it: with the head refitted for OpenVINO and its own threshold key."""

    key = OPENVINO_PREFIX + model
    return OpenVinoBackend(bundle.models[model], precision="int8", threads=threads, name=name, model=key,
                           head=bundle.head_for(key))


def openvino_int8_gated(bundle: Bundle) -> list[str]:
    """The INT8 files that passed their gate as OpenVINO runs them (none without OpenVINO installed)."""
    if not openvino_available():
        return []
    gated = bundle.manifest.openvino_int8
    return [m for m in ("int8-s8", "int8-u8") if m in bundle.models and (gated.get(m) or {}).get("passed")]


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


def _cpu_candidates(bundle: Bundle) -> list[str]:
    """The CPU backends installed here that have a model in this bundle (so only gated precisions)."""
    out = []
    for name in CPU_CANDIDATES:
        if name == "openvino-int8":  # only INT8 files that passed their gate as OpenVINO runs them
            ok = bool(openvino_int8_gated(bundle))
        elif name.startswith("openvino"):
            ok = openvino_available() and any(m in bundle.models for m in _OPENVINO_MODELS[name][1])
        else:
            ok = any(m in bundle.models for m in _ONNX_MODELS[name])
        if ok:
            out.append(name)
    return out


def _open_named(bundle: Bundle, backend: str, threads: int | None) -> Backend:
    if backend.startswith("trt-"):
        return _tensorrt(bundle, backend[len("trt-"):])  # no str.removeprefix: Python 3.8
    if backend.startswith("openvino"):
        return _openvino(bundle, backend, threads)
    return _onnx(bundle, backend, threads)


def _quiet_probe_opener(bundle: Bundle, threads: int | None):
    """Probe instances with ONNX Runtime's spinning workers off: they take turns, and a spinning session would
    steal the next candidate's cores and win by it (edge_runtime.timing.take_turns_fairly)."""

    def open_one(name: str) -> Backend:
        before = os.environ.get("SLSG_ORT_SPIN")
        os.environ["SLSG_ORT_SPIN"] = "0"
        try:
            return _open_named(bundle, name, threads)
        finally:
            if before is None:
                del os.environ["SLSG_ORT_SPIN"]
            else:
                os.environ["SLSG_ORT_SPIN"] = before

    return open_one


def _auto_cpu(bundle: Bundle, threads: int | None, probe_cfg: ProbeConfig | None) -> Backend:
    candidates = _cpu_candidates(bundle)
    if len(candidates) == 1:
        backend = _open_named(bundle, candidates[0], threads)
        _record(backend, {"how": "auto", "picked": candidates[0],
                          "why": "the only CPU backend installed here with a model in this bundle"})
        return backend
    result = probe(bundle, candidates, threads, _quiet_probe_opener(bundle, threads), probe_cfg)
    log.info("auto picked %s: %s", result.picked, result.why)
    backend = _open_named(bundle, result.picked, threads)
    _record(backend, {"how": "auto", **result.to_dict()})
    return backend


def _auto(bundle: Bundle, threads: int | None, probe_cfg: ProbeConfig | None = None) -> Backend:
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
            _record(backend, {"how": "auto", "picked": f"trt-{precision}",
                              "why": f"TensorRT {precision} engine built for this GPU: {engine}"})
            return backend
    if best_providers()[0] != "CPUExecutionProvider":  # onnxruntime-gpu without an engine: ORT on the GPU
        backend = _onnx(bundle, "onnx", threads)
        _record(backend, {"how": "auto", "picked": "onnx", "why": f"ONNX Runtime on {backend.providers[0]} "
                          f"(no TensorRT engine built here: slsg-edge build {bundle.root} --int8)"})
        return backend
    return _auto_cpu(bundle, threads, probe_cfg)


def _record(backend: Backend, selection: dict) -> None:
    """What was picked and why, for the run's start record (`backend.selection`)."""
    try:
        backend.selection = selection
    except AttributeError:  # a backend class with __slots__: the start record then lacks the reason
        log.info("backend %s: %s", getattr(backend, "name", backend), selection.get("why"))


def select_backend(bundle: Bundle, backend: str = "auto", threads: int | None = None,
                   probe_cfg: ProbeConfig | None = None) -> Backend:
    """auto: a cached TensorRT engine for this device, else the fastest CPU backend for this bundle, measured
    here once and cached (`edge_runtime.backends.probe`). Any other name opens exactly that backend."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return _auto(bundle, threads, probe_cfg)
    opened = _open_named(bundle, backend, threads)
    _record(opened, {"how": "asked", "picked": backend, "why": f"--backend {backend}"})
    return opened
