"""Is TensorRT usable here? Answered without importing it at package import time.

`tensorrt-stubs` makes `import tensorrt` succeed as an empty package, so presence is decided by a real
attribute (`trt.Builder`), never by the import alone.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

from .errors import TensorRTMissing
from .versions import TrtVersion

INSTALL_HINT = (
    "How to get it:\n"
    "  • Jetson: TensorRT comes with JetPack (5.1 → 8.5, 6.0 → 8.6, 6.1/6.2 → 10.3).\n"
    "    If Python cannot see it:\n"
    "      sudo apt install python3-libnvinfer python3-libnvinfer-dev\n"
    "    and use the system Python 3 (or a venv made with --system-site-packages).\n"
    "  • Desktop/server GPU (x86_64 or SBSA): pip install tensorrt cuda-python\n"
    "    (or pip install 'slsg[tensorrt]'); a CUDA driver must be installed.\n"
    "Without TensorRT the ONNX Runtime backend still runs: slsg-edge run --bundle BUNDLE ..."
)


def _probe() -> tuple[ModuleType | None, str]:
    """(module, "") when TensorRT is real, else (None, why not)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:  # not installed, or libnvinfer missing underneath
        return None, f"`import tensorrt` failed: {exc}"
    except OSError as exc:  # shared library found but unloadable
        return None, f"TensorRT's libraries could not be loaded: {exc}"
    if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
        where = getattr(trt, "__file__", None) or "a namespace package"
        return None, (f"`import tensorrt` finds {where}, which has no `tensorrt.Builder` "
                      "(a stub package such as tensorrt-stubs, not TensorRT)")
    return trt, ""


@functools.lru_cache(maxsize=1)
def _cached_probe() -> tuple[ModuleType | None, str]:
    return _probe()


def tensorrt_available() -> bool:
    """True only when a real TensorRT Python package imports (cheap after the first call)."""
    return _cached_probe()[0] is not None


def missing_message(reason: str) -> str:
    return f"TensorRT is not available on this machine: {reason}.\n{INSTALL_HINT}"


def load_tensorrt() -> ModuleType:
    """The tensorrt module, or TensorRTMissing with the reason and how to install it."""
    trt, reason = _cached_probe()
    if trt is None:
        raise TensorRTMissing(missing_message(reason))
    return trt


def installed_version() -> TrtVersion:
    return TrtVersion.parse(load_tensorrt().__version__)
