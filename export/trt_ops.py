"""Will the TensorRT ONNX parser of each deployed TensorRT line import this graph?

No TensorRT exists on the development machines, so the check is a table (`trt_ops.json`, read from the
onnx-tensorrt `docs/operators.md` per release branch and its Changelog — sources are listed per version in
the file) plus the per-op restrictions that bite this network: constant TopK K on 8.5, constant Slice and
Squeeze axes before 10.3/10.7, TRT's Resize modes, uint8 only at the network input feeding a Cast — and a
Q/DQ lint (`lint_qdq`) with the rules of the parser's QuantDequantLinearHelper per line: what a quantiser may
emit that the parser refuses (INT32 quantised biases, uint8 activations, non-zero zero points, per-channel
weight scales on the wrong axis). The rules and their sources are tabulated in docs/export.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

TABLE_PATH = Path(__file__).with_name("trt_ops.json")
#: The TensorRT lines the toolkit deploys to (JetPack 5.1, 6.0, 6.1/6.2, 7.2.2+).
TARGETS = ("8.5", "8.6", "10.x", "11.x")
STANDARD_DOMAINS = ("", "ai.onnx")
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                      "align_corners"}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
#: Which input of which weighted op a per-channel weight scale belongs to, and its output-channel axis
#: (a function of the node: Gemm's depends on transB). Conv W is KCRS, ConvTranspose W is CKRS, MatMul B is K×N.
WEIGHT_AXIS = {
    ("Conv", 1): lambda node, rank: 0,
    ("ConvTranspose", 1): lambda node, rank: 1,
    ("Gemm", 1): lambda node, rank: 0 if _attr(node, "transB", 0) else 1,
    ("MatMul", 1): lambda node, rank: rank - 1,
}
#: ONNX's Q output type when no zero point is given (opset < 21, no output_dtype): uint8.
ONNX_DEFAULT_Q_TYPE = onnx.TensorProto.UINT8


@dataclass(frozen=True)
class OpIssue:
    """One reason one TensorRT line would refuse the graph."""

    version: str
    op_type: str
    node: str
    reason: str


@dataclass
class TrtReport:
    """What the graph uses and, per TensorRT line, what would stop the parser."""

    opset: int
    op_types: list[str]
    versions: tuple[str, ...]
    issues: list[OpIssue] = field(default_factory=list)
    qdq_nodes: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues

    def issues_for(self, version: str) -> list[OpIssue]:
        return [i for i in self.issues if i.version == version]

    def summary(self) -> dict:
        """What the manifest records: per version, ok or the distinct problems."""
        out = {"opset": self.opset, "op_types": self.op_types, "qdq_nodes": self.qdq_nodes, "versions": {}}
        for v in self.versions:
            found = sorted({f"{i.op_type}: {i.reason}" for i in self.issues_for(v)})
            out["versions"][v] = {"ok": not found, "issues": found}
        return out

    def message(self) -> str:
        lines = []
        for v in self.versions:
            found = sorted({f"{i.op_type} ({i.node}): {i.reason}" for i in self.issues_for(v)})
            lines += [f"TensorRT {v}: {f}" for f in found]
        return "\n".join(lines)


@lru_cache(maxsize=1)
def load_table(path: Path = TABLE_PATH) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def model_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), default=0)


class _Graph:
    """Just enough of the graph to ask 'is this input a build-time constant?' and 'who reads this tensor?'."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.constants: dict[str, np.ndarray | None] = {
            i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.domain in STANDARD_DOMAINS:
                value = next((a for a in n.attribute if a.name == "value"), None)
                self.constants[n.output[0]] = numpy_helper.to_array(value.t) if value is not None else None
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for name in n.input:
                self.readers.setdefault(name, []).append(n)
        self.elem_types = {v.name: v.type.tensor_type.elem_type
                           for v in [*g.input, *g.output, *g.value_info] if v.type.HasField("tensor_type")}
        self.init_types = {i.name: i.data_type for i in g.initializer}
        self.producers = {o: n for n in g.node for o in n.output}

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def value(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)

    def elem_type(self, name: str) -> int | None:
        """The element type of a tensor: initializer, Constant, declared value_info, or a Q node's output."""
        if name in self.init_types:
            return self.init_types[name]
        node = self.producers.get(name)
        if node is not None and node.op_type == "Constant":
            value = self.value(name)
            return None if value is None else onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
        if node is not None and node.op_type == "QuantizeLinear":
            return quantize_output_type(node, self)
        return self.elem_types.get(name)


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _node_restrictions(node: onnx.NodeProto, graph: _Graph, spec: dict) -> list[str]:
    """Per-op rules from the Restrictions column that this version enforces."""
    op, found = node.op_type, []
    if op == "TopK":
        k = node.input[1] if len(node.input) > 1 else ""
        if not spec.get("dynamic_topk_k") and not graph.is_constant(k):
            found.append("K must be an initializer or Constant (computed from shapes here: export with a "
                         "static shape or simplify the graph)")
        kv = graph.value(k)
        if spec.get("topk_k_max") and kv is not None and int(np.max(kv)) > spec["topk_k_max"]:
            found.append(f"K = {int(np.max(kv))} exceeds {spec['topk_k_max']}")
        if spec.get("topk_sorted") and _attr(node, "sorted", 1) != 1:
            found.append("sorted must be 1")
    elif op == "Slice" and len(node.input) > 3 and node.input[3]:
        if not spec.get("tensor_slice_axes") and not graph.is_constant(node.input[3]):
            found.append("axes must be an initializer")
    elif op in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1]:
        if not spec.get("dynamic_squeeze_axes") and not graph.is_constant(node.input[1]):
            found.append("axes must be a constant")
    elif op == "Resize":
        mode = _text(_attr(node, "mode", "nearest"))
        coord = _text(_attr(node, "coordinate_transformation_mode", "half_pixel"))
        if mode not in RESIZE_MODES:
            found.append(f"mode {mode!r} is not supported (nearest, linear)")
        if coord not in RESIZE_COORDINATES:
            found.append(f"coordinate_transformation_mode {coord!r} is not supported")
        if _attr(node, "antialias", 0):
            found.append("antialiasing is not supported")
    elif op == "MaxPool" and len([o for o in node.output if o]) > 1:
        found.append("the Indices output is not supported")
    return found


def _uint8_issues(model: onnx.ModelProto, graph: _Graph, spec: dict) -> list[tuple[str, str, str]]:
    """UINT8 is only a network I/O type in TensorRT: the uint8 `image` must go straight into a Cast."""
    out = []
    for inp in model.graph.input:
        if inp.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
            continue
        if not spec.get("uint8_io"):
            out.append(("input", inp.name, "uint8 network inputs are not supported"))
            continue
        for reader in graph.readers.get(inp.name, []):
            if reader.op_type != "Cast":
                out.append((reader.op_type, reader.name or inp.name,
                            f"reads the uint8 input {inp.name!r}; only a Cast to float may "
                            "(uint8 is an I/O-only type)"))
    return out


# ---------------------------------------------------------------- Q/DQ lint


def quantize_output_type(node: onnx.NodeProto, graph: _Graph) -> int:
    """What a QuantizeLinear produces: its zero point's type, else `output_dtype`, else ONNX's uint8."""
    if len(node.input) > 2 and node.input[2]:
        zp_type = graph.init_types.get(node.input[2]) or graph.elem_types.get(node.input[2])
        value = graph.value(node.input[2])
        if zp_type is None and value is not None:
            zp_type = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
        if zp_type is not None:
            return zp_type
    dtype = _attr(node, "output_dtype", 0)
    return dtype or ONNX_DEFAULT_Q_TYPE


def _type_name(t: int | None) -> str:
    return "unknown" if t is None else onnx.TensorProto.DataType.Name(t)


def _scale_issues(node: onnx.NodeProto, graph: _Graph) -> list[str]:
    """Scale: a build-time constant, every coefficient positive and finite (all lines)."""
    scale = graph.value(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        return ["scale must be a constant (initializer): dynamic scales have no static shape"]
    if scale.size == 0 or not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        return ["scale coefficients must all be positive (and finite)"]
    return []


def _zero_point_issues(node: onnx.NodeProto, graph: _Graph, spec: dict) -> list[str]:
    has_zp = len(node.input) > 2 and bool(node.input[2])
    if not has_zp:
        found = []
        if spec.get("zero_point_required"):
            found.append("needs its zero-point input (this parser requires 3 inputs for INT8 Q/DQ)")
        if node.op_type == "QuantizeLinear" and not _attr(node, "output_dtype", 0):
            found.append("has no zero point, so ONNX reads it as uint8 while TensorRT reads int8: give an int8 "
                         "zero point of 0")
        return found
    zp = graph.value(node.input[2])
    if zp is None or np.any(zp != 0):
        return ["zero point must be a constant zero (TensorRT quantises symmetrically)"]
    scale = graph.value(node.input[1])
    if scale is not None and zp.size != scale.size:
        return [f"zero point has {zp.size} values but scale has {scale.size}"]
    return []


def _type_issues(node: onnx.NodeProto, graph: _Graph, spec: dict) -> list[str]:
    if node.op_type == "DequantizeLinear":
        t = graph.elem_type(node.input[0])
        allowed = spec["dq_input_types"]
        if t is not None and _type_name(t) not in allowed:
            why = {"INT32": " (a quantised bias: keep biases float, e.g. ORT QuantizeBias=False)",
                   "UINT8": " (uint8 activations are ONNX Runtime's x86 flavour; TensorRT takes int8)"}
            return [f"input is {_type_name(t)}; this parser dequantises only {', '.join(allowed)}"
                    f"{why.get(_type_name(t), '')}"]
        return []
    found = []
    out_type = quantize_output_type(node, graph)
    if out_type == onnx.TensorProto.UINT8 and len(node.input) > 2 and node.input[2]:
        found.append("quantises to UINT8 (uint8 zero point); TensorRT quantises to int8 only")
    t = graph.elem_type(node.input[0])
    if t is not None and _type_name(t) not in spec["q_input_types"]:
        found.append(f"input is {_type_name(t)}; this parser quantises only {', '.join(spec['q_input_types'])}")
    return found


def _shape_of(name: str, graph: _Graph) -> tuple[int, ...] | None:
    value = graph.value(name)
    return None if value is None else tuple(value.shape)


def _axis_issues(node: onnx.NodeProto, graph: _Graph, spec: dict) -> list[str]:
    """Per-axis scales: only on weights (activations are per-tensor), sized to the axis, on the output channel."""
    scale = graph.value(node.input[1]) if len(node.input) > 1 else None
    if scale is None or scale.size == 1:
        return []
    shape = _shape_of(node.input[0], graph)
    if shape is None:
        return ["per-channel scales on an activation: TensorRT quantises activations per tensor only"]
    rank = len(shape)
    if scale.ndim == rank and rank > 1:
        return [] if spec.get("block_scales") else ["block-wise scales (scale of the input's rank) need TensorRT ≥ 10"]
    if scale.ndim != 1:
        return [f"scale of rank {scale.ndim}: per-channel scales must be 1-D"]
    axis = _attr(node, "axis", 1)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank or shape[axis] != scale.size:
        return [f"{scale.size} scales do not match dimension {axis} of the {list(shape)} weight"]
    found = []
    for reader in graph.readers.get(node.output[0], []):
        for index, name in enumerate(reader.input):
            rule = WEIGHT_AXIS.get((reader.op_type, index)) if name == node.output[0] else None
            if rule is not None and rule(reader, rank) != axis:
                found.append(f"per-channel axis {axis} is not the output-channel axis {rule(reader, rank)} of "
                             f"{reader.op_type} {reader.name or '?'} (TensorRT scales weights per output channel)")
    return found


def lint_qdq(model: onnx.ModelProto, versions: tuple[str, ...] = TARGETS) -> list[OpIssue]:
    """Every QuantizeLinear/DequantizeLinear against the Q/DQ rules of each TensorRT line (trt_ops.json "qdq")."""
    table = load_table()["versions"]
    graph = _Graph(model)
    issues = []
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS or node.domain not in STANDARD_DOMAINS:
            continue
        name = node.name or (node.output[0] if node.output else "?")
        common = _scale_issues(node, graph)
        for v in versions:
            spec = table[v]["qdq"]
            found = common + _zero_point_issues(node, graph, spec) + _type_issues(node, graph, spec) + \
                _axis_issues(node, graph, spec)
            issues += [OpIssue(v, node.op_type, name, r) for r in found]
    return issues


def check_model(model: onnx.ModelProto | Path, versions: tuple[str, ...] = TARGETS,
                plugin_ops: tuple[str, ...] = ()) -> TrtReport:
    """Every op type of the graph against each version's table and restrictions.

    `plugin_ops` ("domain::op") are custom nodes a TensorRT plugin provides (the fused graph attention);
    they are not judged here — the runtime checks the plugin's own minimum TensorRT.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    table = load_table()["versions"]
    unknown = [v for v in versions if v not in table]
    if unknown:
        raise ValueError(f"no TensorRT op table for {unknown}; known: {', '.join(table)}")
    graph = _Graph(model)
    opset = model_opset(model)
    op_types = sorted({n.op_type if n.domain in STANDARD_DOMAINS else f"{n.domain}::{n.op_type}"
                       for n in model.graph.node})
    report = TrtReport(opset=opset, op_types=op_types, versions=tuple(versions))
    for v in versions:
        spec = table[v]
        supported = set(spec["supported"])
        if opset > spec["opset_max"]:
            newest = spec["opset_max"]
            report.issues.append(OpIssue(v, "opset", "model", f"opset {opset} > {newest}, the newest this "
                                         f"parser reads: export with --opset {newest}"))
        for node in model.graph.node:
            name = node.name or (node.output[0] if node.output else "?")
            if node.domain not in STANDARD_DOMAINS:
                if f"{node.domain}::{node.op_type}" not in plugin_ops:
                    report.issues.append(OpIssue(v, f"{node.domain}::{node.op_type}", name,
                                                 "custom op with no TensorRT plugin"))
                continue
            if node.op_type not in supported:
                report.issues.append(OpIssue(v, node.op_type, name, "not supported by this ONNX parser"))
                continue
            found = _node_restrictions(node, graph, spec)
            report.issues += [OpIssue(v, node.op_type, name, r) for r in found]
        report.issues += [OpIssue(v, op, node, r) for op, node, r in _uint8_issues(model, graph, spec)]
    report.issues += lint_qdq(model, tuple(versions))
    report.qdq_nodes = sum(1 for n in model.graph.node if n.op_type in QDQ_OPS)
    return report
