"""bf16: `model.onnx` run in OpenVINO's bf16 arithmetic, gated like INT8 before the runtime may use it.

bf16 keeps FP32's range but only 8 bits of mantissa: on a CPU with bf16 it halves OpenVINO's FP32 time, and the
maps move by ~2e-3 — enough to shift a threshold, so it is a precision of its own: no new file (the bf16 model is
`model.onnx` compiled for bf16), but its own gate on the held-out images (map correlation, AUROC drop with its
bootstrap interval: `calibration.accuracy.compare`, the INT8 rule), its own threshold from its own scores, and
`models["bf16"]` in the manifest only when the gate passed. The gate can only run where the CPU has bf16:
elsewhere the runtime would run f32 under the bf16 name, so it is refused, with the reason, never faked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from calibration.accuracy import AccuracyReport, EvalData, compare, run_backend, run_model
from edge_runtime.backends.base import Outputs
from edge_runtime.backends.openvino_backend import OpenVinoBackend
from edge_runtime.timing import cpu_model

#: As strict as FP16's map rule: bf16 has fewer mantissa bits than FP16, and no saving in file size to trade for.
BF16_MIN_MAP_CORRELATION = 0.99

Candidate = Callable[[np.ndarray], Outputs]


@dataclass
class Bf16Report:
    file: str
    openvino: str
    cpu: str
    map_max_abs_diff: float
    score_max_abs_diff: float
    accuracy: dict

    def to_dict(self) -> dict:
        return asdict(self)


def bf16_backend(model: Path, threads: int | None = None, head: Path | None = None):
    """OpenVINO over `model` in bf16, with the global `head` refitted for bf16 if given (raises BackendError where
    OpenVINO or the CPU's bf16 is absent)."""

    return OpenVinoBackend(model, precision="bf16", threads=threads, name="openvino-bf16", model="bf16", head=head)


def gate_bf16(fp32_onnx: Path, data: EvalData, auroc_budget: float,
              min_map_correlation: float = BF16_MIN_MAP_CORRELATION,
              candidate: Candidate | None = None,
              reference: Outputs | None = None, outputs: Outputs | None = None) -> tuple[AccuracyReport, Bf16Report]:
    """bf16 (`candidate`, default OpenVINO bf16 over `fp32_onnx`; or its `outputs` on the gate's images, where the
    caller has them) against FP32 (ONNX Runtime; `reference`, where the caller has its outputs on the gate's images
    already) by the INT8 rule; the verdict is `AccuracyReport.passed` and its `reasons`."""
    images = data.images()
    ref = reference if reference is not None else run_model(fp32_onnx, images)
    test = outputs if outputs is not None else run_backend(candidate or bf16_backend(fp32_onnx), images)
    acc = compare(ref, test, data, auroc_budget, min_map_correlation)
    report = Bf16Report(file=Path(fp32_onnx).name, openvino=version("openvino"), cpu=cpu_model(),
                        map_max_abs_diff=float(np.max(np.abs(ref.maps - test.maps))),
                        score_max_abs_diff=float(np.max(np.abs(ref.score - test.score))), accuracy=acc.to_dict())
    return acc, report
