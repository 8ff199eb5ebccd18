from __future__ import annotations

import numpy as np
import onnx

from calibration.fp16 import export_fp16
from calibration.tests.tiny_model import anomalous_images, good_images


def test_fp16_model_runs_and_agrees_with_fp32(tiny_onnx, tmp_path):
    imgs = np.concatenate([good_images(3, 1), anomalous_images(3, 2)])
    report = export_fp16(tiny_onnx, tmp_path / "model.fp16.onnx", imgs)
    assert report.map_pearson > 0.999 and report.map_max_abs_diff < 0.02 and report.score_max_abs_diff < 0.01
    assert report.bytes < report.fp32_bytes and report.nodes_fp16 > 0
    model = onnx.load(str(tmp_path / "model.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    fp16_weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert conv_weights & fp16_weights
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for n in model.graph.node:
        if n.op_type in ("TopK", "Softmax"):
            assert types.get(n.input[0]) == onnx.TensorProto.FLOAT, n.name
