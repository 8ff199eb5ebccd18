from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

from calibration import accuracy, int8
from calibration.accuracy import run_model
from calibration.float_regions import find_float_regions
from calibration.int8 import (
    CONTEXT_IN_INT8,
    CPU,
    TRT,
    Int8Config,
    activations_after_conv,
    count_int8_ops,
    default_exclusions,
    flavour_exclusions,
    quantize_flavour,
    tensor_ranges,
)
from calibration.reader import TensorReader
from calibration.tests.tiny_model import good_images

CFG = Int8Config(method="minmax", progress=False)


@pytest.fixture(scope="module")
def flavours(work: Path, pre_model: Path, ranges) -> dict[str, Path]:
    exclude = default_exclusions(pre_model, CFG).all()
    return {f: quantize_flavour(pre_model, ranges["minmax"], work / f"q_{f}.onnx", f, CFG, exclude)
            for f in (TRT, CPU)}


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _producer(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def test_trt_flavour_is_symmetric_int8_with_float_biases(flavours):
    model = onnx.load(str(flavours[TRT]))
    inits = _inits(model)
    qs = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qs
    for n in qs:
        zp = inits[n.input[2]]
        assert not zp.any() and zp.dtype == np.int8, n.name
    dq_inputs = [inits[n.input[0]] for n in qs if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq_inputs and all(x.dtype == np.int8 for x in dq_inputs)  # no INT32 (quantised bias) anywhere
    biases = [inits[n.input[2]] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2
              and n.input[2] in inits]
    assert biases and all(b.dtype == np.float32 for b in biases)


def test_cpu_flavour_keeps_ort_int32_biases(flavours):
    """ONNX Runtime's fast x86 path wants quantised biases: only the TensorRT flavour drops them."""
    model = onnx.load(str(flavours[CPU]))
    inits = _inits(model)
    assert any(inits[n.input[0]].dtype == np.int32 for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits)


def test_conv_weights_are_per_channel_on_output_axis(flavours, pre_model):
    pre = onnx.load(str(pre_model))
    out_channels = {n.name: _inits(pre)[n.input[1]].shape[0] for n in pre.graph.node if n.op_type == "Conv"}
    for flavour in (TRT, CPU):
        model = onnx.load(str(flavours[flavour]))
        inits, producer = _inits(model), _producer(model)
        checked = 0
        for conv in (n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in producer):
            dq = producer[conv.input[1]]
            assert dq.op_type == "DequantizeLinear"
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            assert axis == 0 and inits[dq.input[1]].shape == (out_channels[conv.name],)
            assert inits[dq.input[0]].dtype == np.int8
            checked += 1
        assert checked >= 4


def test_cpu_flavour_has_uint8_activations_and_runs_int8(flavours, tiny_onnx):
    model = onnx.load(str(flavours[CPU]))
    inits = _inits(model)
    activation_zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_zps and all(z.dtype == np.uint8 for z in activation_zps)
    counts = count_int8_ops(flavours[CPU])
    assert counts.get("QLinearConv", 0) + counts.get("ConvInteger", 0) >= 4
    imgs = good_images(4, 9)
    ref, out = run_model(tiny_onnx, imgs), run_model(flavours[CPU], imgs)
    assert out.maps.shape == ref.maps.shape and np.corrcoef(ref.maps.ravel(), out.maps.ravel())[0, 1] > 0.9


def test_graph_block_and_head_stay_float(flavours, pre_model):
    regions = find_float_regions(onnx.load(str(pre_model)))
    assert {"TopK", "Softmax", "GatherElements", "ReduceMax"} <= {
        n.op_type for n in onnx.load(str(pre_model)).graph.node if n.name in regions.graph_block}
    for flavour in (TRT, CPU):
        model = onnx.load(str(flavours[flavour]))
        producer = _producer(model)
        kept = ("TopK", "Softmax", "GatherElements", "MatMul")
        fed_by_dq = [n for n in model.graph.node if n.op_type in kept
                     and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                             for i in n.input)]
        assert not fed_by_dq, [n.name for n in fed_by_dq]
        first = model.graph.node[0]
        assert first.op_type == "Cast"  # pre-processing reads the uint8 input directly, no Q/DQ in front


def test_methods_give_different_ranges_and_scales(ranges, work, pre_model):
    r = {m: tensor_ranges(p) for m, p in ranges.items()}
    for a, b in (("minmax", "entropy"), ("minmax", "percentile"), ("entropy", "percentile")):
        assert any(not np.isclose(r[a][k][1], r[b][k][1]) for k in r[a]), (a, b)
    scales = {}
    exclude = default_exclusions(pre_model, CFG).all()
    for m in ("minmax", "percentile"):
        cfg = Int8Config(method=m, progress=False)
        q = onnx.load(str(quantize_flavour(pre_model, ranges[m], work / f"m_{m}.onnx", TRT, cfg, exclude)))
        inits = _inits(q)
        scales[m] = {n.input[0]: float(inits[n.input[1]]) for n in q.graph.node
                     if n.op_type == "QuantizeLinear"}
    shared = set(scales["minmax"]) & set(scales["percentile"])
    assert shared and any(scales["minmax"][k] != scales["percentile"][k] for k in shared)


def test_entropy_with_equal_bins_is_refused():
    with pytest.raises(ValueError, match="equals minmax"):
        Int8Config(method="entropy", num_bins=128, num_quantized_bins=128)


def test_trt_flavour_quantises_activation_outputs_not_conv_outputs(flavours, pre_model):
    """Conv → ReLU → Q/DQ, never Conv → Q/DQ → ReLU → Q/DQ: one rounding at the post-activation range (TensorRT fuses
    conv, activation and Q; the double rounding cost Lite0's symmetric model 0.949 → 0.990 map correlation)."""

    acts = activations_after_conv(onnx.load(str(pre_model)))
    assert acts  # the tiny model has conv-BN-ReLU blocks (BN folded by the pre-processing)
    q = onnx.load(str(flavours[TRT]))
    producer = _producer(q)
    readers: dict[str, list[str]] = {}
    for n in q.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.op_type)
    relus = [n for n in q.graph.node if n.name in acts]
    assert relus and all(producer[n.input[0]].op_type == "Conv" for n in relus)
    assert all(readers.get(n.output[0]) and set(readers[n.output[0]]) <= {"QuantizeLinear"} | FLOAT_READERS
               for n in relus)


FLOAT_READERS = {"Shape", "Resize", "Concat", "Add", "Conv", "MaxPool", "GlobalAveragePool", "ReduceMean", "Mul", "Sub"}


def _pooled_branch_model() -> onnx.ModelProto:
    """conv A feeds the map (conv M) and, through a context conv C and a pooling, a whitened image score."""

    rng = np.random.default_rng(0)
    w = {n: numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
         for n, s in (("wa", (4, 3, 3, 3)), ("wm", (1, 4, 1, 1)), ("wc", (4, 4, 1, 1)), ("whiten", (4, 4)))}
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="A", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "wm"], ["anomaly_map"], name="M"),
             helper.make_node("Conv", ["a", "wc"], ["c"], name="C"),
             helper.make_node("ReduceMean", ["c"], ["pooled"], name="pool", axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["pooled", "whiten"], ["z"], name="whiten_mm"),
             helper.make_node("ReduceSumSquare", ["z"], ["score_global"], name="distance", axes=[1], keepdims=0)]
    graph = helper.make_graph(nodes, "pooled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("score_global", TensorProto.FLOAT, None)],
                              list(w.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_the_context_stage_is_a_region_of_its_own_quantised_only_in_the_flavours_that_allow_it():
    regions = find_float_regions(_pooled_branch_model())
    assert regions.global_context == ["C"]                      # feeds only the pooling
    assert "pool" in regions.global_head and "C" not in regions.global_head
    assert not {"A", "M"} & set(regions.all())                  # what the map needs is quantised
    exclusions = flavour_exclusions(regions)
    for flavour, names in exclusions.items():
        assert ("C" in names) == (flavour not in CONTEXT_IN_INT8)
        assert "pool" in names


def test_calibration_run_ahead_on_every_core_gives_the_ranges_of_one_run_at_a_time(pre_model, calib_set, tmp_path,
                                                                                     monkeypatch):
    cfg = Int8Config(method="minmax", progress=False)
    monkeypatch.setattr(int8, "pass_workers", lambda: 1)
    serial = json.loads(int8.compute_ranges(pre_model, calib_set.tensors, cfg, tmp_path / "serial.json").read_text())
    monkeypatch.setattr(int8, "pass_workers", lambda: 3)
    ahead = json.loads(int8.compute_ranges(pre_model, calib_set.tensors, cfg, tmp_path / "ahead.json").read_text())
    assert ahead == serial
    assert len(serial["data"]) > 10


def test_a_model_run_on_every_core_gives_each_image_its_own_outputs_in_order(tiny_onnx, eval_data, monkeypatch):
    images = eval_data.images()
    monkeypatch.setattr(accuracy, "pass_workers", lambda: 1)
    one = run_model(tiny_onnx, images)
    monkeypatch.setattr(accuracy, "pass_workers", lambda: 3)
    many = run_model(tiny_onnx, images)
    np.testing.assert_array_equal(many.maps, one.maps)
    np.testing.assert_array_equal(many.score, one.score)


def test_the_minmax_pass_gives_onnx_runtimes_ranges_for_every_tensor_a_quantiser_reads_and_no_other(pre_model,
                                                                                                    calib_set,
                                                                                                    tmp_path):
    """Our minmax pass runs only the part of the graph that computes what a quantiser reads; for each of those
    tensors it gives ONNX Runtime's own minmax calibrator's range exactly, and the nodes every flavour keeps float
    (here the graph's last node) add no range of their own."""
    calibrator = create_calibrator(pre_model, None, augmented_model_path=str(tmp_path / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.collect_data(TensorReader(calib_set.tensors, int8.input_name(pre_model), progress=False))
    theirs = {name: tuple(float(v[0]) for v in r.range_value) for name, r in calibrator.compute_data().data.items()}
    model = onnx.load(str(pre_model))
    last = model.graph.node[-1]
    ours = int8.minmax_ranges(model, calib_set.tensors, {last.name}, progress=False)
    assert set(ours) <= set(theirs) and last.output[0] not in ours
    for name, (low, high) in ours.items():  # its session optimises the graph (ONNX Runtime's calibrator does not)
        np.testing.assert_allclose([low[0], high[0]], theirs[name], rtol=0,
                                   atol=1e-5 * (theirs[name][1] - theirs[name][0]))
    assert {x for n in model.graph.node[:-1] for x in (*n.input, *n.output) if x in theirs} <= set(ours)
