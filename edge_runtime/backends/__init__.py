"""Inference backends behind one small protocol (`Backend`), and the rule that picks one for a bundle."""

from edge_runtime.backends.base import Backend, BackendError, check_batch, input_size_of
from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, best_providers
from edge_runtime.backends.select import BACKENDS, select_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "OnnxRuntimeBackend",
    "best_providers",
    "check_batch",
    "input_size_of",
    "select_backend",
]
