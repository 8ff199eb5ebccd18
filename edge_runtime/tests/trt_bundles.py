"""Real bundles for the TensorRT layer's tests: an ONNX graph with the SLSG contract (image uint8 NHWC in;
anomaly_map, score and one score_<head> per head out), written with onnx.helper, and its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import Manifest, write_manifest
from edge_runtime.preprocess import IMAGENET, preprocess_spec
from edge_runtime.scoring import SCORE_DEFINITION, Threshold

H, W = 16, 24
HEADS = ("slsg", "global")
#: The plugin node's (C, N): the channel-mean map H×W seen as C = 8 rows of N = 48 nodes (N ≥ k = 27).
PLUGIN_CN = (8, H * W // 8)


def heads_model(path: Path, batch: int | str = "N", plugin: bool = False, qdq: bool = False) -> Path:
    """`qdq`: a QuantizeLinear/DequantizeLinear pair on the map (explicit quantisation, as model.int8-s8.onnx)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[3], keepdims=0),
        helper.make_node("Div", ["m", "c255"], ["p0"]),
        *([helper.make_node("QuantizeLinear", ["p0", "qs"], ["pq"]),
           helper.make_node("DequantizeLinear", ["pq", "qs"], ["p"])] if qdq
          else [helper.make_node("Identity", ["p0"], ["p"])]),
        helper.make_node("Reshape", ["p", "map_shape"], ["anomaly_map"]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["flat"]),
        helper.make_node("TopK", ["flat", "k"], ["top", "idx"], axis=1),
        helper.make_node("ReduceMean", ["top"], ["score"], axes=[1], keepdims=0),
    ]
    nodes += [helper.make_node("Identity", ["score"], [f"score_{h}"]) for h in HEADS]
    value_info = []
    if plugin:      # the exporter's node: h, q, v (B, C, N) and rel_pos (N, N) in; three outputs
        nodes += [helper.make_node("Reshape", ["m", "node_shape"], ["gh"]),
                  helper.make_node("GraphAttention", ["gh", "gh", "gh", "rel_pos"], ["ga_mr", "ga_ctx", "ga_nbr"],
                                   domain="slsg", plugin_namespace="slsg", k=27, dilation=3)]
        value_info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, *PLUGIN_CN])
                      for n in ("gh", "ga_mr", "ga_ctx")]
        value_info.append(helper.make_tensor_value_info("ga_nbr", TensorProto.INT32, [batch, PLUGIN_CN[1], 9]))
    inits = [helper.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
             *([helper.make_tensor("qs", TensorProto.FLOAT, [], [1 / 127])] if qdq else []),
             helper.make_tensor("map_shape", TensorProto.INT64, [4], [-1, 1, H, W]),
             helper.make_tensor("flat_shape", TensorProto.INT64, [2], [-1, H * W]),
             helper.make_tensor("k", TensorProto.INT64, [1], [10])]
    if plugin:
        n = PLUGIN_CN[1]
        inits += [helper.make_tensor("node_shape", TensorProto.INT64, [3], [0, *PLUGIN_CN]),
                  helper.make_tensor("rel_pos", TensorProto.FLOAT, [n, n], np.zeros(n * n, np.float32))]
    outputs = [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, 1, H, W]),
               helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch])]
    outputs += [helper.make_tensor_value_info(f"score_{h}", TensorProto.FLOAT, [batch]) for h in HEADS]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                                            [batch, H, W, 3])], outputs, inits,
                              value_info=value_info)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("slsg", 1)] if plugin else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def make_trt_bundle(root: Path, batch: int | str = "N", calibration_frames: int = 0, plugin: bool = False,
                    int8_qdq: bool = True):
    """A verified bundle with fp32, fp16 and int8 files (the int8 one with Q/DQ nodes unless `int8_qdq` is
    False), optional calibration tensors and the fused-plugin marker."""
    root.mkdir(parents=True, exist_ok=True)
    models = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8-s8": "model.int8-s8.onnx"}
    for precision, name in models.items():
        heads_model(root / name, batch, plugin, qdq=precision == "int8-s8" and int8_qdq)
    manifest = {
        "model": {"backbone": "test-heads"},
        "input": {"name": "image", "dtype": "uint8", "shape": [batch, H, W, 3], "layout": "NHWC", "color": "BGR"},
        "preprocess": preprocess_spec((H, W), IMAGENET),
        "score": SCORE_DEFINITION,
        "threshold": Threshold(0.5, 0.01, 10, {"0.5": 0.3}).to_dict(),
        "models": models,
    }
    if calibration_frames:
        (root / "calibration").mkdir(exist_ok=True)
        frames = np.random.default_rng(0).integers(0, 256, (calibration_frames, H, W, 3), dtype=np.uint8)
        np.save(root / "calibration" / "frames.npy", frames)
        manifest["calibration"] = {"tensors": "calibration/frames.npy"}
    if plugin:
        manifest["plugins"] = ["slsg::GraphAttention"]
    write_manifest(root, Manifest.new(manifest))
    return load_bundle(root)


def frames(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, 3), dtype=np.uint8)


def expected(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """What the fake engine computes (edge_runtime.tests.fakes.tensorrt)."""
    maps = batch.astype(np.float64).mean(axis=3) / 255.0
    score = maps.reshape(len(batch), -1).mean(axis=1)
    return maps.astype(np.float32), score.astype(np.float32), {h: (score * len(h)).astype(np.float32) for h in HEADS}
