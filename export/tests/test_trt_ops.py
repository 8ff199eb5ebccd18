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
