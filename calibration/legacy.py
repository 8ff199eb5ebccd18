"""Implicit INT8 calibration for TensorRT ≤ 10 (`IInt8EntropyCalibrator2`), fed from the bundle's tensors.

TensorRT 11 removed this path (explicit Q/DQ models replace it). The TensorRT subclass is created lazily,
only where `tensorrt` really imports, so the batching and cache logic below runs and is tested anywhere.
Device copies go through an injectable function: (host array) → device pointer (int).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

CopyToDevice = Callable[[np.ndarray], int]


class CalibratorCore:
    """Batches over uint8 N×H×W×3 tensors and the calibration cache file; no TensorRT needed."""

    def __init__(self, batches: np.ndarray, cache_path: Path, batch_size: int = 1,
                 copy_to_device: CopyToDevice | None = None) -> None:
        if batches.ndim != 4 or batches.dtype != np.uint8:
            raise ValueError(f"calibration tensors must be uint8 N×H×W×3, got {batches.dtype}{batches.shape}")
        if batch_size < 1 or batch_size > len(batches):
            raise ValueError(f"batch size {batch_size} must be between 1 and the "
                             f"{len(batches)} calibration images")
        self.tensors = batches
        self.cache_path = Path(cache_path)
        self.batch_size = batch_size
        self.copy_to_device = copy_to_device
        self._next = 0

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: list[str]) -> list[int] | None:
        """Device pointers for the next full batch (one per input name), None when the data is spent."""
        if self._next + self.batch_size > len(self.tensors):
            return None
        if self.copy_to_device is None:
            raise RuntimeError("no device copy function: pass copy_to_device (e.g. cuda-python memcpy) "
                               "to the calibrator")
        batch = np.ascontiguousarray(self.tensors[self._next:self._next + self.batch_size])
        self._next += self.batch_size
        return [self.copy_to_device(batch) for _ in names]

    def read_calibration_cache(self) -> bytes | None:
        """The cache from an earlier build, so TensorRT skips calibration; None makes it calibrate."""
        if self.cache_path.is_file():
            data = self.cache_path.read_bytes()
            return data or None
        return None

    def write_calibration_cache(self, cache: bytes | memoryview) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(self.cache_path.suffix + ".tmp")
        tmp.write_bytes(bytes(cache))
        tmp.replace(self.cache_path)


def tensorrt_module():
    """The real TensorRT module, or None (an empty stub package that imports is not TensorRT)."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt if hasattr(trt, "Builder") and hasattr(trt, "IInt8EntropyCalibrator2") else None


_SUBCLASS = None


def _entropy_subclass(trt):
    global _SUBCLASS
    if _SUBCLASS is None:
        class _EntropyCalibrator(trt.IInt8EntropyCalibrator2, CalibratorCore):
            def __init__(self, *args, **kwargs) -> None:
                trt.IInt8EntropyCalibrator2.__init__(self)
                CalibratorCore.__init__(self, *args, **kwargs)

        _SUBCLASS = _EntropyCalibrator
    return _SUBCLASS


def EntropyCalibrator(batches: np.ndarray, cache_path: Path, batch_size: int = 1,  # noqa: N802
                      copy_to_device: CopyToDevice | None = None):
    """A `trt.IInt8EntropyCalibrator2` over the calibration tensors, for TensorRT ≤ 10's implicit INT8.

    Raises RuntimeError naming the way out where TensorRT is missing, or is 11+ (use `model.int8.onnx`).
    """
    trt = tensorrt_module()
    if trt is None:
        raise RuntimeError("TensorRT is not importable here: the legacy INT8 calibrator needs TensorRT ≤ 10 "
                           "(install the tensorrt extra on the target), "
                           "or build from model.int8.onnx instead")
    return _entropy_subclass(trt)(batches, cache_path, batch_size, copy_to_device)
