"""The exception types that mean "bad input, say so plainly" rather than "bug, show a traceback"."""

from __future__ import annotations

import importlib

_KNOWN = [
    ("slsg.checkpoint", "CheckpointError"),
    ("slsg.model.weights", "WeightsError"),
    ("slsg.model.official", "OfficialImportError"),
    ("slsg.data", "DataError"),
    ("edge_runtime.bundle", "BundleError"),
    ("edge_runtime.preprocess", "FrameError"),
    ("export.onnx_export", "ExportError"),
    ("calibration.selection", "CalibrationError"),
    ("edge_runtime.backends.base", "BackendError"),
    ("edge_runtime.tensorrt.errors", "TensorRTError"),
]


def known_errors() -> tuple[type[BaseException], ...]:
    """User-facing error classes of every part that is installed, plus ValueError and FileNotFoundError."""
    found: list[type[BaseException]] = [ValueError, FileNotFoundError, NotADirectoryError, PermissionError]
    for module, name in _KNOWN:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)
