"""What every inference backend offers the pipeline: uint8 BGR frames in, maps and scores out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A backend that cannot be opened or run; the message says which file or library and what to do."""


@runtime_checkable
class Backend(Protocol):
    """`run(batch)`: uint8 BGR N×H×W×3 at `input_size` → (float32 maps N×H×W, float32 scores N)."""

    name: str
    providers: list[str]
    input_size: tuple[int, int]

    def run(self, batch_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def check_batch(batch_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A wrong batch must fail with a message, not inside a C++ session with a cryptic one."""
    if not isinstance(batch_bgr, np.ndarray) or batch_bgr.dtype != np.uint8:
        raise BackendError(
            f"backend input must be a uint8 array, got "
            f"{getattr(batch_bgr, 'dtype', type(batch_bgr).__name__)}"
        )
    if batch_bgr.ndim == 3:
        batch_bgr = batch_bgr[None]
    if batch_bgr.ndim != 4 or batch_bgr.shape[1:] != (size[0], size[1], 3):
        raise BackendError(
            f"backend input must be N×{size[0]}×{size[1]}×3 BGR, got {batch_bgr.shape}: "
            "pass frames through edge_runtime.preprocess.prepare first"
        )
    return np.ascontiguousarray(batch_bgr)


def input_size_of(backend: Backend) -> tuple[int, int]:
    """`input_size`, or `size` for a backend that names it so (the TensorRT backend did at first)."""
    size = getattr(backend, "input_size", None) or getattr(backend, "size", None)
    if size is None:
        raise BackendError(f"backend {getattr(backend, 'name', backend)!r} does not say its input size")
    return int(size[0]), int(size[1])
