"""GEMM peaks come from real ONNX Runtime products; floors are 2·MACs / peak."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks.roofline import GEMM_KINDS, Peaks, floor_ms, floors_for, gemm_model, measure_peaks


def test_fp32_and_int8_gemm_models_compute_the_product() -> None:
    for kind in GEMM_KINDS:
        model = gemm_model(kind, 16)
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        a = np.full((16, 16), 130, np.uint8) if kind != "fp32" else np.eye(16, dtype=np.float32)
        (y,) = s.run(None, {"a": a})
        b = {t.name: t for t in model.graph.initializer}["b"]
        from onnx import numpy_helper

        w = numpy_helper.to_array(b).astype(np.float64)
        if kind == "fp32":
            np.testing.assert_allclose(y, w, rtol=1e-6)
        elif kind == "int8-matmulinteger":
            np.testing.assert_array_equal(y, (2 * w.sum(axis=0, keepdims=True)).repeat(16, 0))
        else:
            expected = np.clip(np.round(0.02 * 0.01 * 2 * w.sum(axis=0) / 0.5) + 128, 0, 255)
            np.testing.assert_allclose(y[0], expected, atol=1)


def test_measured_peaks_are_positive_and_int8_takes_the_better_operator() -> None:
    p = measure_peaks(threads=1, n=64, repeats=2)
    assert p.fp32 > 0 and p.int8 == max(p.int8_matmulinteger, p.int8_qlinearmatmul) > 0
    assert p.to_dict()["int8"] == p.int8


def test_floor_is_two_ops_per_mac() -> None:
    assert floor_ms(23_100_000_000, 470e9) == pytest.approx(98.3, abs=0.1)
    with pytest.raises(ValueError):
        floor_ms(1, 0)


def test_each_backend_is_judged_against_its_own_arithmetic() -> None:
    peaks = Peaks(1024, 2, 400e9, 1000e9, 800e9)
    floors = floors_for(["torch", "onnx", "onnx-int8", "trt-fp16"], 10**9, peaks)
    assert set(floors) == {"torch", "onnx", "onnx-int8"}
    assert floors["onnx"]["floor_ms"] == pytest.approx(5.0)
    assert floors["onnx-int8"]["floor_ms"] == pytest.approx(2.0)
