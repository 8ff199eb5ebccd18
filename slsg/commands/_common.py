"""What every `slsg` command shares: one console, and turning known errors into a message + exit code."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=False)
err_console = Console(stderr=True)

#: user-facing error classes by module; this table lives in the CLI layer, the only one that may name every part
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


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Known failures print `error: …` and exit 2, without a traceback."""
    try:
        yield
    except (*known_errors(), *extra) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
