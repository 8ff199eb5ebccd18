"""INT8 weights re-stored in 7 bits for OpenVINO when activations are signed: what keeps its x86 kernels from
saturating.

On x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) oneDNN multiplies u8 by s8 with `vpmaddubsw`, which sums
each pair of products into a *saturating* int16; signed (s8) activations are first shifted by +128 into u8, so
products of up to 255 × 127 appear and a pair of them overflows. The symmetric file (`model.int8-s8.onnx`, s8
activations for TensorRT) then parts from ONNX Runtime (which widens first) at the first convolution — measured
on Lite0 at 128²: block 0's projection output correlated 0.68 with ONNX Runtime's; with the same weights in 7 bits
0.9999. Anomaly map against FP32: bottle 256² 0.53 → 0.91, main job 128² 0.53 → 0.72. The u8 file is left as it
is: it does not saturate there (map 0.977), and 7 bits cost it resolution (0.938). oneDNN's documentation gives
the same remedy. It is applied on every CPU, VNNI or not, so the arithmetic the export's OpenVINO gate measured is
the arithmetic the line PC runs.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.optional import onnx


def seven_bit_weights(model) -> int:
    """How many weights were rewritten, in place: in a file with signed activations every stored int8 weight
    halved into [-64, 63] and its scale doubled; any other model is left unchanged (0)."""
    numpy_helper = onnx.numpy_helper
    stored = {t.name: t for t in model.graph.initializer}
    if not signed_activations(model.graph, stored):
        return 0
    done: set[str] = set()
    scaled: set[str] = set()  # a scale shared by several weights is doubled once
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in stored or node.input[0] in done:
            continue
        q = numpy_helper.to_array(stored[node.input[0]])
        if q.dtype != np.int8 or node.input[1] not in stored:
            continue
        zero = numpy_helper.to_array(stored[node.input[2]]) if len(node.input) > 2 and node.input[2] else 0
        if np.any(zero != 0):
            continue  # asymmetric weights are not what export writes; leave them as they are
        scale = numpy_helper.to_array(stored[node.input[1]])
        halved = np.clip(np.round(q.astype(np.float32) / 2.0), -64, 63).astype(np.int8)
        stored[node.input[0]].CopyFrom(numpy_helper.from_array(halved, node.input[0]))
        if node.input[1] not in scaled:
            stored[node.input[1]].CopyFrom(numpy_helper.from_array((scale * 2).astype(scale.dtype), node.input[1]))
            scaled.add(node.input[1])
        done.add(node.input[0])
    return len(done)


def signed_activations(graph, stored: dict) -> bool:
    """Does any QuantizeLinear of a computed tensor (an activation) quantise to int8?"""
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in stored and len(node.input) > 2:
            zero = stored.get(node.input[2])
            if zero is not None and zero.data_type == onnx.TensorProto.INT8:
                return True
    return False
