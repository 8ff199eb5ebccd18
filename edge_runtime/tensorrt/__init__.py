"""TensorRT engines and the TensorRT backend. Importing this package imports neither tensorrt nor a CUDA
binding (the backend selector calls `tensorrt_available()` cheaply); they load when an engine is built or run.

Module map (each imports only those above it):

    errors      every error this package raises on purpose; each message says what to do
    versions    the installed TensorRT (is it real?) and what each version offers (`ApiPlan`)
    cuda        CUDA bindings (cuda-python 11.x–13.x, pycuda fallback), the device, memory/stream/graphs
    recipe      pure decisions: precision plan, batch profile, DLA, plugins → `EngineKey`
    cache       engine files + sidecars under BUNDLE/engines/, which of them fit this device
    calibrator  the legacy INT8 entropy calibrator (TensorRT ≤ 10)
    builder     ONNX → engine: TensorRT calls, progress, parser-error messages, plugin registration
    backend     engine I/O contract, buffer plans, `TensorRTBackend`
    parity      the numbers `benchmarks/trt_check` reports
"""

from .backend import TensorRTBackend
from .builder import BuildResult, BuildSettings, build_engine
from .cache import EngineEntry, Target, current_target, find_cached_engine, list_engines, lookup
from .cuda import DeviceInfo, query_device
from .errors import (
    BuildFailure,
    BuildRequestError,
    CudaUnavailable,
    DeviceMemoryError,
    EngineMismatch,
    ParserFailure,
    PluginUnsupported,
    PrecisionError,
    TensorRTError,
    TensorRTMissing,
    UnsupportedTensorRT,
)
from .recipe import PRECISIONS, EngineKey, EngineRequest, PrecisionPlan, plan_precision
from .versions import ApiPlan, TrtVersion, api_plan, installed_version, load_tensorrt, tensorrt_available

__all__ = [
    "PRECISIONS", "ApiPlan", "BuildFailure", "BuildRequestError", "BuildResult", "BuildSettings",
    "CudaUnavailable", "DeviceInfo", "DeviceMemoryError", "EngineEntry", "EngineKey", "EngineMismatch", "EngineRequest",
    "ParserFailure", "PluginUnsupported", "PrecisionError", "PrecisionPlan", "Target", "TensorRTBackend",
    "TensorRTError", "TensorRTMissing", "TrtVersion", "UnsupportedTensorRT", "api_plan", "build_engine",
    "current_target", "find_cached_engine", "installed_version", "list_engines", "load_tensorrt", "lookup",
    "plan_precision", "query_device", "tensorrt_available",
]
