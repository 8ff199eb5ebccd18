"""Which ONNX file and builder flags each precision gets, per TensorRT version."""

import pytest

from edge_runtime.tensorrt.errors import PrecisionError
from edge_runtime.tensorrt.recipe import FLOAT_PINNED_LAYERS, plan_precision
from edge_runtime.tensorrt.versions import api_plan

FULL = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8-s8": "model.int8-s8.onnx",
        "int8-u8": "model.int8-u8.onnx"}
FP32_ONLY = {"fp32": "model.onnx"}


@pytest.mark.parametrize("ver", ["8.5.2", "8.6.1", "10.3.0", "10.9.0"])
def test_up_to_10_fp16_is_the_flag_on_the_fp32_graph_with_float_pins(ver):
    plan = plan_precision("fp16", api_plan(ver), FULL)
    assert plan.onnx_name == "model.onnx"
    assert "FP16" in plan.builder_flags and not plan.strongly_typed
    assert plan.pinned_float_layers == FLOAT_PINNED_LAYERS


@pytest.mark.parametrize("ver", ["8.5.2", "10.3.0"])
def test_up_to_10_int8_is_the_qdq_graph_with_int8_and_fp16_fallback(ver):
    plan = plan_precision("int8", api_plan(ver), FULL)
    assert plan.onnx_name == "model.int8-s8.onnx"
    assert {"INT8", "FP16"} <= set(plan.builder_flags)
    assert not plan.legacy_calibrator and plan.variant == "qdq"


def test_legacy_calibrator_uses_the_fp32_graph_when_the_bundle_has_tensors():
    plan = plan_precision("int8", api_plan("8.6.1"), FP32_ONLY, legacy_calibrator=True,
                          has_calibration_tensors=True)
    assert plan.onnx_name == "model.onnx" and plan.legacy_calibrator and plan.variant == "calib"
    assert "INT8" in plan.builder_flags


def test_legacy_calibrator_without_tensors_says_how_to_get_them():
    with pytest.raises(PrecisionError, match="re-export with --int8"):
        plan_precision("int8", api_plan("10.3.0"), FULL, legacy_calibrator=True,
                       has_calibration_tensors=False)


def test_legacy_calibrator_is_refused_on_tensorrt_11():
    with pytest.raises(PrecisionError, match="removed implicit INT8 calibration"):
        plan_precision("int8", api_plan("11.0.0"), FULL, legacy_calibrator=True, has_calibration_tensors=True)


def test_legacy_calibrator_only_for_int8():
    with pytest.raises(PrecisionError, match="only applies to --int8"):
        plan_precision("fp16", api_plan("10.3.0"), FULL, legacy_calibrator=True)


@pytest.mark.parametrize("precision, onnx", [("fp32", "model.onnx"), ("fp16", "model.fp16.onnx"),
                                              ("int8", "model.int8-s8.onnx")])
def test_tensorrt_11_is_strongly_typed_from_the_matching_file_without_flags(precision, onnx):
    plan = plan_precision(precision, api_plan("11.0.0"), FULL)
    assert plan.onnx_name == onnx and plan.strongly_typed
    assert plan.builder_flags == () and plan.pinned_float_layers == ()


@pytest.mark.parametrize("ver, precision, flag", [("10.3.0", "int8", "--int8"), ("11.0.0", "int8", "--int8"),
                                                  ("11.0.0", "fp16", "--fp16")])
def test_missing_file_error_says_how_to_re_export(ver, precision, flag):
    with pytest.raises(PrecisionError, match=f"re-export it: slsg export RUN -o BUNDLE {flag}"):
        plan_precision(precision, api_plan(ver), FP32_ONLY)


def test_fp16_on_10_needs_only_the_fp32_file():
    assert plan_precision("fp16", api_plan("10.3.0"), FP32_ONLY).onnx_name == "model.onnx"


def test_unknown_precision_is_refused():
    with pytest.raises(PrecisionError, match="choose one of fp32, fp16, int8"):
        plan_precision("bf16", api_plan("10.3.0"), FULL)
