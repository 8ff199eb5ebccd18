"""TensorRT engines and backend. Importing this package does not import tensorrt (the backend selector
calls `tensorrt_available()` cheaply); TensorRT is loaded when an engine is built or run."""

from .availability import installed_version, load_tensorrt, tensorrt_available
from .backend import TensorRTBackend
from .builder import BuildResult, BuildSettings, build_engine
from .cache import EngineKey, list_engines, lookup
from .device import DeviceInfo, query_device
from .errors import (
                     BuildFailure,
                     CudaUnavailable,
                     EngineMismatch,
                     ParserFailure,
                     PluginUnsupported,
                     PrecisionError,
                     TensorRTError,
                     TensorRTMissing,
                     UnsupportedTensorRT,
)
from .precision import PRECISIONS, PrecisionPlan, plan_precision
from .recipe import find_cached_engine
from .versions import ApiPlan, TrtVersion, api_plan

__all__ = [
    "ApiPlan", "BuildFailure", "BuildResult", "BuildSettings", "CudaUnavailable", "DeviceInfo", "EngineKey",
    "EngineMismatch", "PRECISIONS", "ParserFailure", "PluginUnsupported", "PrecisionError", "PrecisionPlan",
    "TensorRTBackend", "TensorRTError", "TensorRTMissing", "TrtVersion", "UnsupportedTensorRT", "api_plan",
    "build_engine", "find_cached_engine", "installed_version", "list_engines", "load_tensorrt", "lookup",
    "plan_precision", "query_device", "tensorrt_available",
]
