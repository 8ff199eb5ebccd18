"""Implicit INT8 calibration for TensorRT ≤ 10 (`IInt8EntropyCalibrator2`), fed from the bundle's tensors.

TensorRT 11 removed this path (explicit Q/DQ models replace it). `CalibratorCore` holds the batching and
the cache file and runs anywhere; `entropy_calibrator` wraps it in the TensorRT class.

Why the wrapper defines every method itself instead of mixing the core in: the pybind class binds
documentation-only stubs for `get_batch`, `get_batch_size` and the cache methods (NVIDIA/TensorRT
`python/src/infer/pyInt8.cpp`, "Fake bindings ... solely for documentation purposes"). pybind11 finds a
Python override by attribute lookup on the instance and ignores it when the attribute found is a bound
C++ function (`get_type_override`), so with the TensorRT class first among the bases its stubs shadow a
mixin's methods and TensorRT calls the pure virtual. Methods defined on the subclass itself always win.

The batch fed must have the batch of the calibration profile's opt shape (TensorRT calibrates at kOPT:
IBuilderConfig.set_calibration_profile; Polygraphy: "Will use `opt` shapes from profile 0 for calibration"),
and the type TensorRT reads: float32 for every input that is not an index type, so the uint8 image is fed as
float32 pixel values (`calibration_dtype`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from .cache import atomic_write
from .errors import PrecisionError

if TYPE_CHECKING:  # a runtime alias would subscript collections.abc.Callable, which Python 3.8 cannot
    from collections.abc import Callable

    #: (batch N×H×W×3 in the calibration type) → device pointer holding a copy of it, valid until the next call.
    CopyToDevice = Callable[[np.ndarray], int]

#: Calibration inputs TensorRT reads in their own type (index types and float32); it reads every other input as
#: float32 — Polygraphy `backend/trt/calibrator.py` (Calibrator.set_input_metadata, v10.16) converts them, and its
#: CHANGELOG 0.49.10 calls the conversion "required by TensorRT".
_READ_AS_IS = {"FLOAT": np.float32, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


def calibration_dtype(trt_type_name: str) -> np.dtype:
    """The type TensorRT reads a calibration input as, from `str(tensor.dtype)` ("DataType.UINT8" or "UINT8"):
    a uint8 image is read as float32, so feeding its bytes would hand TensorRT a quarter of what it reads."""
    return np.dtype(_READ_AS_IS.get(str(trt_type_name).rsplit(".", 1)[-1].upper(), np.float32))


def load_calibration_frames(path: Path) -> np.ndarray:
    frames = np.load(path, allow_pickle=False)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise PrecisionError(f"{Path(path).name} must hold uint8 N×H×W×3 BGR frames, "
                             f"got {frames.dtype}{frames.shape}")
    return frames


class CalibratorCore:
    """Full batches of `batch_size` frames in the type TensorRT reads (`dtype`, see `calibration_dtype`), copied
    to the device by `copy_to_device`, and the cache file."""

    def __init__(self, frames: np.ndarray, cache_path: Path, batch_size: int,
                 copy_to_device: CopyToDevice, dtype: np.dtype = calibration_dtype("UINT8")) -> None:
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.dtype != np.uint8:
            got = f"{frames.dtype}{frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
            raise PrecisionError(f"calibration tensors must be a uint8 N×H×W×3 array, got {got}")
        if batch_size < 1 or batch_size > len(frames):
            raise PrecisionError(f"the calibration batch ({batch_size}, the profile's opt batch) must be "
                                 f"between 1 and the {len(frames)} calibration images; build with a smaller "
                                 "--max-batch or re-export with more calibration images")
        self.frames = frames
        self.cache_path = Path(cache_path)
        self.batch_size = int(batch_size)
        self.copy_to_device = copy_to_device
        self.dtype = np.dtype(dtype)
        self.batches_fed = 0

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: list[str]) -> Optional[list[int]]:
        """One device pointer per input name for the next full batch; None when the frames are spent."""
        start = self.batches_fed * self.batch_size
        if start + self.batch_size > len(self.frames):
            return None
        batch = np.ascontiguousarray(self.frames[start:start + self.batch_size], dtype=self.dtype)
        self.batches_fed += 1
        pointer = int(self.copy_to_device(batch))
        return [pointer for _ in names]

    def read_calibration_cache(self) -> Optional[bytes]:
        """The cache from an earlier build, so TensorRT skips calibration; None makes it calibrate."""
        if self.cache_path.is_file():
            return self.cache_path.read_bytes() or None
        return None

    def write_calibration_cache(self, cache: Union[bytes, memoryview]) -> None:
        atomic_write(self.cache_path, bytes(cache))


def entropy_calibrator(trt: Any, core: CalibratorCore) -> Any:
    """A `trt.IInt8EntropyCalibrator2` delegating to `core` (see the module doc for why not a mixin)."""
    base = trt.IInt8EntropyCalibrator2

    class EntropyCalibrator(base):
        def __init__(self) -> None:
            base.__init__(self)       # a pybind trampoline must have its base initialised explicitly
            self.core = core

        def get_batch_size(self) -> int:
            return self.core.get_batch_size()

        def get_batch(self, names: list[str]) -> Optional[list[int]]:
            return self.core.get_batch(names)

        def read_calibration_cache(self) -> Optional[bytes]:
            return self.core.read_calibration_cache()

        def write_calibration_cache(self, cache: Union[bytes, memoryview]) -> None:
            self.core.write_calibration_cache(cache)

    return EntropyCalibrator()
