"""Will the TensorRT ONNX parser of each deployed TensorRT line import this graph?

No TensorRT exists on the development machines, so the check is a table (`trt_ops.json`, read from the
onnx-tensorrt `docs/operators.md` per release branch and its Changelog — sources are listed per version in
the file) plus the per-op restrictions that bite this network: constant TopK K on 8.5, constant Slice and
Squeeze axes before 10.3/10.7, TRT's Resize modes, uint8 only at the network input feeding a Cast.
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

    @property
    def ok(self) -> bool:
        return not self.issues

    def issues_for(self, version: str) -> list[OpIssue]:
        return [i for i in self.issues if i.version == version]

    def summary(self) -> dict:
        """What the manifest records: per version, ok or the distinct problems."""
        out = {"opset": self.opset, "op_types": self.op_types, "versions": {}}
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

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def value(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)


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
    elif op in QDQ_OPS and len(node.input) > 2 and node.input[2]:
        zp = graph.value(node.input[2])
        if zp is None or np.any(zp != 0):
            found.append("zero point must be a constant zero (symmetric quantisation)")
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
    return report
