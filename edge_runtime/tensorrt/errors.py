"""Errors of the TensorRT layer: each says what is wrong and what to do, so the CLI can print it as is."""

from __future__ import annotations

from edge_runtime.errors import SlsgError


class TensorRTError(SlsgError, RuntimeError):
    """Base of every error the TensorRT layer raises on purpose."""


class TensorRTMissing(TensorRTError):
    """TensorRT's Python package is absent, broken, or only a stub."""


class UnsupportedTensorRT(TensorRTError):
    """The installed TensorRT is older than the oldest one this builder knows (8.5, JetPack 5.1)."""


class PrecisionError(TensorRTError):
    """The asked precision cannot be built from this bundle with this TensorRT."""


class PluginUnsupported(TensorRTError):
    """The graph needs the fused plugin and the installed TensorRT cannot load it."""


class ParserFailure(TensorRTError):
    """TensorRT's ONNX parser refused the graph."""


class BuildFailure(TensorRTError):
    """The builder returned no engine."""


class BuildRequestError(TensorRTError):
    """The asked build cannot be made from this bundle on this device (batch profile, DLA core)."""


class CudaUnavailable(TensorRTError):
    """No CUDA binding, no driver, or no GPU."""


class DeviceMemoryError(TensorRTError):
    """The device has too little free memory for what TensorRT must allocate (an execution context)."""


class EngineMismatch(TensorRTError):
    """An engine's inputs/outputs are not those of an SLSG bundle."""
