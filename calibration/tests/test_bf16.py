"""bf16 is gated like INT8 before the runtime may use it, and refused where it cannot really be measured."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.bf16 import gate_bf16
from edge_runtime.backends.base import BackendError, Outputs
from edge_runtime.backends.openvino_backend import OpenVinoBackend, cpu_has_bf16, openvino_available

pytestmark = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed here "
                                "(pip install 'slsg[openvino]')")


def _keep_mantissa_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """float32 with only `bits` of its 23 mantissa bits (7 = bf16's): rounding to a coarser float, made to order."""
    drop = 23 - bits
    as_int = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return (((as_int + (1 << (drop - 1))) >> drop) << drop).view(np.float32)


def _rounded(tiny_onnx, bits: int):
    """A real OpenVINO f32 session whose outputs are rounded to `bits` mantissa bits."""

    be = OpenVinoBackend(tiny_onnx, precision="fp32", threads=1)

    def candidate(batch: np.ndarray) -> Outputs:
        out = be.run(batch)
        return Outputs(_keep_mantissa_bits(out.maps, bits), _keep_mantissa_bits(out.score, bits),
                       {k: _keep_mantissa_bits(v, bits) for k, v in out.heads.items()})

    return candidate


def test_bf16_rounding_passes_the_gate(tiny_onnx, eval_data) -> None:
    acc, report = gate_bf16(tiny_onnx, eval_data, 0.01, candidate=_rounded(tiny_onnx, 7))
    assert acc.passed, acc.reasons
    assert acc.map_pearson > 0.999 and 0 < report.map_max_abs_diff < 1e-2


def test_a_coarser_arithmetic_is_refused_with_the_reason(tiny_onnx, eval_data) -> None:
    acc, _ = gate_bf16(tiny_onnx, eval_data, 0.01, candidate=_rounded(tiny_onnx, 0))
    assert not acc.passed and any("map correlation" in r or "AUROC" in r for r in acc.reasons)


def test_the_gate_runs_real_bf16_or_refuses_to_pretend(tiny_onnx, eval_data) -> None:
    """A CPU without bf16 would run f32 under the bf16 name: the gate must refuse, not pass it."""

    if not cpu_has_bf16():
        with pytest.raises(BackendError, match="no bf16"):
            gate_bf16(tiny_onnx, eval_data, 0.01)
        return
    acc, report = gate_bf16(tiny_onnx, eval_data, 0.01)
    assert report.map_max_abs_diff > 0  # really bf16: the maps moved
    assert acc.map_pearson > 0.99
