"""FP16 ONNX for TensorRT 11's strongly typed builds (where the FP16 builder flag is gone).

Weights and the convolutional trunk go to float16; the input stays uint8, the outputs float32, and the
same float regions as INT8 (pre-processing, graph-attention block, scoring head) stay float32, with Cast
nodes wherever the two precisions meet. Written here rather than taken from onnxconverter-common so the
kept regions are found structurally, exactly as the INT8 path finds them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from calibration.accuracy import pearson, run_model
from calibration.float_regions import find_float_regions, name_nodes

#: Inputs that are float32 whatever the data type of the op (Resize's roi and scales).
FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
#: Ops that accept any input type: no Cast needed in front of them.
ANY_TYPE_OPS = {"Shape", "Size"}
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


@dataclass
class Fp16Report:
    file: str
    bytes: int
    fp32_bytes: int
    nodes_fp16: int
    nodes_fp32: int
    casts_inserted: int
    map_max_abs_diff: float
    map_pearson: float
    score_max_abs_diff: float
    images: int

    def to_dict(self) -> dict:
        return asdict(self)


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    infos = list(g.value_info) + list(g.input) + list(g.output)
    names = {v.name for v in infos if v.type.tensor_type.elem_type == F32}
    names |= {i.name for i in g.initializer if i.data_type == F32}
    return names


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
    return None


def convert_to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """A float16 copy of `model` with the float regions kept float32; returns it and counts for the report."""
    model = name_nodes(onnx.ModelProto.FromString(model.SerializeToString()))
    graph = model.graph
    floats = _float_tensors(model)
    keep32 = set(find_float_regions(model).all())
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producer = {o: n for n in graph.node for o in n.output}

    def precision(node: onnx.NodeProto) -> int:
        return 32 if node.name in keep32 or node.op_type == "Constant" else 16

    new_inits: dict[str, str] = {}
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []

    def as_fp16_constant(name: str) -> str | None:
        if name in new_inits:
            return new_inits[name]
        value = numpy_helper.to_array(inits[name]) if name in inits else (
            _constant_value(consts[name]) if name in consts else None)
        if value is None:
            return None
        new = f"{name}__fp16"
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float16), new))
        new_inits[name] = new
        return new

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            out = f"{name}__to{16 if to == F16 else 32}"
            new_nodes.append(helper.make_node("Cast", [name], [out], name=f"{out}_Cast", to=to))
            casts[key] = out
        return casts[key]

    counts = {"nodes_fp16": 0, "nodes_fp32": 0}
    for node in graph.node:
        if node.op_type == "Constant":
            new_nodes.append(node)
            continue
        p = precision(node)
        counts["nodes_fp16" if p == 16 else "nodes_fp32"] += 1
        if p == 16:
            for a in node.attribute:
                if node.op_type == "Cast" and a.name == "to" and a.i == F32:
                    a.i = F16
                if node.op_type == "ConstantOfShape" and a.name == "value" and a.t.data_type == F32:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
        if node.op_type not in ANY_TYPE_OPS:
            for i, t in enumerate(node.input):
                if not t or t not in floats:
                    continue
                need = 32 if (node.op_type, i) in FP32_INPUTS or p == 32 else 16
                is_const = t in inits or t in consts
                have = 32 if is_const or t not in producer else precision(producer[t])
                if need == have:
                    continue
                replacement = as_fp16_constant(t) if (is_const and need == 16) else None
                node.input[i] = replacement or cast(t, F16 if need == 16 else F32)
        new_nodes.append(node)

    for out in graph.output:
        src = producer.get(out.name)
        if src is not None and out.name in floats and precision(src) == 16:
            inner = f"{out.name}__fp16"
            for n in new_nodes:
                n.output[:] = [inner if o == out.name else o for o in n.output]
                n.input[:] = [inner if i == out.name else i for i in n.input]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_Cast32", to=F32))

    used = {i for n in new_nodes for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    del graph.node[:]
    graph.node.extend(_toposort(new_nodes, {i.name for i in graph.input} | {i.name for i in kept_inits}))
    del graph.value_info[:]
    counts["casts_inserted"] = len(casts) + sum(1 for n in new_nodes if n.name.endswith("_Cast32"))
    return model, counts


def _toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    ready = set(available) | {""}
    pending, ordered = list(nodes), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"FP16 conversion left a cycle or a dangling input at {rest[0].name}")
        pending = rest
    return ordered


def export_fp16(fp32_onnx: Path, out: Path, images: np.ndarray | None = None) -> Fp16Report:
    """Write `model.fp16.onnx` and check it against the FP32 model in ONNX Runtime on `images`.

    `images` should be real prepared frames (uint8 N×H×W×3); without them a few seeded random frames of
    the model's size are used, which checks the graph runs and agrees but says little about accuracy.
    """
    model = onnx.load(str(fp32_onnx))
    converted, counts = convert_to_fp16(model)
    onnx.checker.check_model(converted)
    onnx.save(converted, str(out))
    if images is None:
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        images = np.random.default_rng(0).integers(0, 256, (2, dims[1], dims[2], dims[3]), dtype=np.uint8)
    ref, test = run_model(fp32_onnx, images), run_model(out, images)
    return Fp16Report(file=out.name, bytes=out.stat().st_size, fp32_bytes=fp32_onnx.stat().st_size,
                      map_max_abs_diff=float(np.abs(ref.maps - test.maps).max()),
                      map_pearson=pearson(ref.maps, test.maps),
                      score_max_abs_diff=float(np.abs(ref.score - test.score).max()),
                      images=len(images), **counts)
