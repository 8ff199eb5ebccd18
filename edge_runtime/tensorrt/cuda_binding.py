"""Which CUDA Python binding is installed: cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` before
12.6) or pycuda. Imported lazily; nothing here touches a GPU."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .errors import CudaUnavailable

CUDA_HINT = ("install cuda-python (pip install cuda-python; on Jetson pick the major version of the "
             "JetPack's CUDA, e.g. 'cuda-python>=12,<13' on JetPack 6) or pycuda")


def cudart_module() -> ModuleType | None:
    """cuda-python's runtime module under whichever name this version uses, else None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def pycuda_driver() -> ModuleType | None:
    try:
        return importlib.import_module("pycuda.driver")
    except ImportError:
        return None


def error_name(err: Any) -> str:
    return getattr(err, "name", None) or str(err)


def check(result: Any, what: str, cudart: ModuleType | None = None) -> Any:
    """cuda-python returns (error, *values): raise CudaUnavailable on error, else the value(s)."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        detail = ""
        if cudart is not None and hasattr(cudart, "cudaGetErrorString"):
            _, text = cudart.cudaGetErrorString(err)
            detail = f": {text.decode() if isinstance(text, bytes) else text}"
        raise CudaUnavailable(f"{what} failed with {error_name(err)}{detail}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values
