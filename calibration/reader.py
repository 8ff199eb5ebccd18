"""Feeding calibration tensors to ONNX Runtime's calibrators, with a progress bar."""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edge_runtime.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TensorReader(CalibrationDataReader):
    """Hands out the uint8 N×H×W×3 calibration tensors in batches under the model's input name."""

    def __init__(self, tensors: np.ndarray, input_name: str = "image", batch_size: int = 1,
                 progress: bool = True, description: str = "calibrating") -> None:
        if tensors.ndim != 4 or tensors.dtype != np.uint8:
            raise ValueError(f"calibration tensors must be uint8 N×H×W×3, got {tensors.dtype}{tensors.shape}")
        self.tensors = tensors
        self.input_name = input_name
        self.batch_size = max(1, batch_size)
        self.description = description
        self.show_progress = progress
        self._progress: Progress | None = None
        self._task = None
        self.rewind()

    def __len__(self) -> int:
        return -(-len(self.tensors) // self.batch_size)

    def rewind(self) -> None:
        self._next = 0
        self._stop_progress()

    def _start_progress(self) -> None:
        if self.show_progress and self._progress is None:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=len(self.tensors))

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.tensors):
            self._stop_progress()
            return None
        self._start_progress()
        batch = self.tensors[self._next:self._next + self.batch_size]
        self._next += len(batch)
        if self._progress is not None:
            self._progress.update(self._task, advance=len(batch))
        return {self.input_name: np.ascontiguousarray(batch)}
