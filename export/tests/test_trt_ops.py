"""The TensorRT op table refuses what each parser cannot import, and passes the exported SLSG graph."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.trt_ops import TARGETS, check_model, load_table


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_unsupported_op_fails_on_every_version():
    m = _model([helper.make_node("Unique", ["x"], ["y"], name="uniq")], [_f("x", [4])], [_f("y", [None])])
    onnx.checker.check_model(m)
    report = check_model(m)
    assert not report.ok
    for v in TARGETS:
        assert [i.op_type for i in report.issues_for(v)] == ["Unique"]
    assert "Unique" in report.message()


def test_custom_domain_op_needs_a_plugin():
    node = helper.make_node("GraphAttention", ["x"], ["y"], domain="slsg")
    m = _model([node], [_f("x", [4])], [_f("y", [4])])
    m.opset_import.append(helper.make_opsetid("slsg", 1))
    assert not check_model(m).ok
    assert check_model(m, plugin_ops=("slsg::GraphAttention",)).ok


def test_topk_with_computed_k_fails_only_on_8_5():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("TopK", ["x", "s"], ["v", "i"], name="topk")]
    outs = [_f("v", None), helper.make_tensor_value_info("i", TensorProto.INT64, None)]
    m = _model(nodes, [_f("x", [8])], outs)
    report = check_model(m)
    assert [i.version for i in report.issues] == ["8.5"]
    assert "initializer" in report.issues[0].reason


def test_topk_constant_k_passes_and_huge_k_fails_on_10():
    def topk(k):
        init = numpy_helper.from_array(np.array([k], np.int64), "k")
        nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"])]
        outs = [_f("v", None), helper.make_tensor_value_info("i", TensorProto.INT64, None)]
        return _model(nodes, [_f("x", [5000])], outs, [init])

    assert check_model(topk(100)).ok
    assert {i.version for i in check_model(topk(4000)).issues} == {"10.x", "11.x"}


def test_uint8_input_must_feed_a_cast():
    u8 = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 4, 4, 3])
    good = _model([helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                   helper.make_node("Transpose", ["f"], ["y"], perm=[0, 3, 1, 2])], [u8], [_f("y", None)])
    bad = _model([helper.make_node("Transpose", ["image"], ["t"], perm=[0, 3, 1, 2]),
                  helper.make_node("Cast", ["t"], ["y"], to=TensorProto.FLOAT)], [u8], [_f("y", None)])
    assert check_model(good).ok
    report = check_model(bad)
    assert {i.op_type for i in report.issues} == {"Transpose"} and len(report.issues) == len(TARGETS)


def test_resize_mode_and_opset_limits():
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")
    node = helper.make_node("Resize", ["x", "roi", "sc"], ["y"], mode="cubic")
    m = _model([node], [_f("x", [1, 1, 2, 2])], [_f("y", None)], [roi, scales])
    assert all("cubic" in i.reason for i in check_model(m).issues)
    relu = _model([helper.make_node("Relu", ["x"], ["y"])], [_f("x", [2])], [_f("y", [2])], opset=18)
    assert {i.version for i in check_model(relu).issues} == {"8.5", "8.6"}


def test_table_cites_its_sources():
    table = load_table()["versions"]
    assert set(TARGETS) <= set(table)
    for v in TARGETS:
        assert table[v]["sources"]
        assert "TopK" in table[v]["supported"] and "Unique" not in table[v]["supported"]


# ---------------------------------------------------------------- the Q/DQ lint


def _qdq_conv(weight_axis=0, zp_type=TensorProto.INT8, zp_value=0, act_scale=0.05, bias="float", act_zp=True,
              op="Conv", act_per_channel=False, weight_type=TensorProto.INT8):
    """x → Q → DQ → Conv/ConvTranspose(DQ(W int8, per-channel), bias) → y: a clean TensorRT Q/DQ conv by default."""
    cout, cin = 8, 4
    w_shape = (cout, cin, 3, 3) if op == "Conv" else (cin, cout, 3, 3)
    n_w = w_shape[weight_axis]
    np_zp = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[zp_type]
    np_w = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[weight_type]
    inits = [
        numpy_helper.from_array(np.full((cin,) if act_per_channel else (), act_scale, np.float32), "xs"),
        numpy_helper.from_array(np.full((cin,) if act_per_channel else (), zp_value, np_zp), "xz"),
        numpy_helper.from_array(np.ones(w_shape, np_w), "wq"),
        numpy_helper.from_array(np.full(n_w, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(n_w, np_w), "wz"),
    ]
    q_inputs = ["x", "xs", "xz"] if act_zp else ["x", "xs"]
    axis = {"axis": 1} if act_per_channel else {}
    nodes = [helper.make_node("QuantizeLinear", q_inputs, ["xq"], name="q_x", **axis),
             helper.make_node("DequantizeLinear", ["xq", *q_inputs[1:]], ["xd"], name="dq_x", **axis),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq_w", axis=weight_axis)]
    conv_inputs = ["xd", "w"]
    if bias == "float":
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "b"))
        conv_inputs.append("b")
    elif bias == "int32":  # what ORT's QuantizeBias (default True) writes
        inits += [numpy_helper.from_array(np.zeros(cout, np.int32), "bq"),
                  numpy_helper.from_array(np.full(cout, 5e-4, np.float32), "bs"),
                  numpy_helper.from_array(np.zeros(cout, np.int32), "bz")]
        nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["b"], name="dq_bias", axis=0))
        conv_inputs.append("b")
    nodes.append(helper.make_node(op, conv_inputs, ["y"], name="conv", pads=[1, 1, 1, 1]))
    return _model(nodes, [_f("x", [1, cin, 8, 8])], [_f("y", [1, cout, 8, 8] if op == "Conv" else None)], inits)


def _qdq_reasons(model, version="8.5"):
    return [i.reason for i in check_model(model).issues_for(version) if i.op_type in ("QuantizeLinear",
                                                                                       "DequantizeLinear")]


def test_clean_symmetric_qdq_conv_passes_every_line():
    report = check_model(_qdq_conv())
    assert report.ok, report.message()
    assert check_model(_qdq_conv(op="ConvTranspose", weight_axis=1)).ok


def test_lint_rejects_a_quantised_int32_bias_on_every_line():
    report = check_model(_qdq_conv(bias="int32"))
    for v in TARGETS:
        assert any("INT32" in i.reason and i.node == "dq_bias" for i in report.issues_for(v)), v


def test_lint_rejects_uint8_activations_and_a_uint8_zero_point():
    report = check_model(_qdq_conv(zp_type=TensorProto.UINT8, zp_value=0))
    for v in TARGETS:
        reasons = [i.reason for i in report.issues_for(v)]
        assert any("UINT8" in r and "quantises to" in r for r in reasons), v      # Q → uint8
        assert any("input is UINT8" in r for r in reasons), v                    # DQ of uint8


def test_lint_rejects_a_non_zero_zero_point():
    assert any("zero point must be a constant zero" in r for r in _qdq_reasons(_qdq_conv(zp_value=3)))


def test_lint_rejects_scales_that_are_not_positive():
    for bad in (0.0, -0.1):
        for v in TARGETS:
            assert any("positive" in r for r in _qdq_reasons(_qdq_conv(act_scale=bad), v)), (bad, v)


def test_lint_requires_the_zero_point_before_tensorrt_10():
    report = check_model(_qdq_conv(act_zp=False))
    need = [i for i in report.issues if "3 inputs" in i.reason]
    assert {i.version for i in need} == {"8.5", "8.6"}
    # and a Q without a zero point means uint8 to ONNX but int8 to TensorRT: refused everywhere
    assert {i.version for i in report.issues if "uint8 while TensorRT reads int8" in i.reason} == set(TARGETS)


def test_lint_rejects_per_channel_activation_scales():
    reasons = _qdq_reasons(_qdq_conv(act_per_channel=True))
    assert any("activations per tensor only" in r for r in reasons)


def test_lint_rejects_a_weight_scale_off_the_output_channel_axis():
    conv = _qdq_reasons(_qdq_conv(weight_axis=1))           # Conv W is KCRS: axis 0
    deconv = _qdq_reasons(_qdq_conv(op="ConvTranspose", weight_axis=0))  # ConvTranspose W is CKRS: axis 1
    assert any("not the output-channel axis 0" in r for r in conv)
    assert any("not the output-channel axis 1" in r for r in deconv)


def test_lint_checks_matmul_and_gemm_weight_axes():
    def weighted(op, axis, **attrs):
        w = np.ones((6, 5), np.int8)  # MatMul B: K×N (output axis 1); Gemm with transB: N×K (output axis 0)
        inits = [numpy_helper.from_array(w, "wq"),
                 numpy_helper.from_array(np.full(w.shape[axis], 0.1, np.float32), "ws"),
                 numpy_helper.from_array(np.zeros(w.shape[axis], np.int8), "wz")]
        nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq_w", axis=axis),
                 helper.make_node(op, ["x", "w"], ["y"], name="mm", **attrs)]
        x = [2, 6] if op == "MatMul" or not attrs.get("transB") else [2, 5]
        return _model(nodes, [_f("x", x)], [_f("y", None)], inits)

    assert check_model(weighted("MatMul", 1)).ok
    assert any("axis 1" in r for r in _qdq_reasons(weighted("MatMul", 0)))
    assert check_model(weighted("Gemm", 0, transB=1)).ok
    assert any("axis 0" in r for r in _qdq_reasons(weighted("Gemm", 1, transB=1)))


def test_every_qdq_rule_cites_its_source_per_line():
    table = load_table()["versions"]
    for v in TARGETS:
        qdq = table[v]["qdq"]
        assert qdq["sources"] and all("onnx-tensorrt" in s or "docs.nvidia.com" in s for s in qdq["sources"])
        assert "INT8" in qdq["dq_input_types"] and "INT32" not in qdq["dq_input_types"]
