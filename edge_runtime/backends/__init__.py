"""Inference backends behind one small protocol (`Backend`): ONNX Runtime, OpenVINO (TensorRT lives in
`edge_runtime.tensorrt`), and the rule that picks one for a bundle (`select_backend`, `auto`'s measured probe)."""

from edge_runtime.backends.base import Backend, BackendError, check_batch, input_size_of
from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, best_providers
from edge_runtime.backends.openvino_backend import OpenVinoBackend, openvino_available
from edge_runtime.backends.probe import ProbeConfig
from edge_runtime.backends.select import BACKENDS, select_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "ProbeConfig",
    "best_providers",
    "check_batch",
    "input_size_of",
    "openvino_available",
    "select_backend",
]
