"""GEMM peaks come from real ONNX Runtime and OpenVINO products; each case's floor is 2·MACs / its own peak."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from benchmarks.roofline import (
    GEMM_KINDS,
    PEAK_BURST,
    Peaks,
    floor_ms,
    floors_for,
    gemm_model,
    gemm_runners,
    measure_peaks,
    peak_cases,
    peaks_from_timings,
)
from edge_runtime.backends.openvino_backend import openvino_available
from edge_runtime.timing import run_alternating


def test_fp32_and_int8_gemm_models_compute_the_product() -> None:
    for kind in GEMM_KINDS:
        model = gemm_model(kind, 16)
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        a = np.full((16, 16), 130, np.uint8) if kind != "fp32" else np.eye(16, dtype=np.float32)
        (y,) = s.run(None, {"a": a})
        b = {t.name: t for t in model.graph.initializer}["b"]

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


def test_openvino_cases_are_judged_against_openvino_peaks_and_skipped_without_one() -> None:
    peaks = Peaks(1024, 2, 400e9, 1000e9, 800e9, openvino_fp32=500e9, openvino_bf16=None, openvino_int8=2000e9)
    floors = floors_for(["openvino", "openvino-bf16", "openvino-int8"], 10**9, peaks)
    assert set(floors) == {"openvino", "openvino-int8"}  # no bf16 peak (a CPU without bf16): no bf16 floor
    assert floors["openvino"]["floor_ms"] == pytest.approx(4.0) and floors["openvino"]["peak"] == "openvino_fp32"
    assert floors["openvino-int8"]["floor_ms"] == pytest.approx(1.0)


def test_qdq_gemm_computes_the_dequantised_product_in_ort() -> None:
    model = gemm_model("qdq", 16)
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = s.run(None, {"a": np.eye(16, dtype=np.float32)})

    w = numpy_helper.to_array({t.name: t for t in model.graph.initializer}["b"]).astype(np.float64)
    # eye quantises to round(1/0.02)·0.02 = 1.0, so y ≈ 0.01·B (ORT's fused int8 kernel rounds a few entries)
    assert np.corrcoef(y.ravel(), 0.01 * w.ravel())[0, 1] > 0.99 and np.median(np.abs(y - 0.01 * w)) < 1e-6


def test_interleaved_peaks_come_from_the_same_alternating_rounds() -> None:
    runners = gemm_runners(threads=1, n=64)
    if openvino_available():
        assert {"openvino_fp32", "openvino_int8"} <= set(runners)
    timings = run_alternating(peak_cases(runners), warmup=1, iterations=3, progress=False)
    peaks = peaks_from_timings(timings, 64, 1)
    assert peaks.fp32 > 0 and peaks.int8 > 0 and "interleaved" in peaks.how
    assert (peaks.openvino_fp32 is not None) == openvino_available()


def test_a_peak_is_read_from_warm_products_not_the_cold_first_one_of_each_turn() -> None:
    calls = []

    def product() -> None:  # the first product of each turn is cold: 10× slower, as AMX after other work
        calls.append(1)
        time.sleep(0.02 if len(calls) % PEAK_BURST == 1 else 0.002)

    timings = run_alternating(peak_cases({"fp32": product, "int8_matmulinteger": lambda: None,
                                          "int8_qlinearmatmul": lambda: None}), warmup=0, iterations=3,
                              progress=False)
    assert len(calls) == 3 * PEAK_BURST
    peaks = peaks_from_timings(timings, 100, 1)
    assert 2.0 * 100**3 / peaks.fp32 < 0.01  # ~2 ms a product, not the cold 20 ms or the turn's 26 ms
