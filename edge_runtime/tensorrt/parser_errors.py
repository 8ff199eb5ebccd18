"""ONNX-parser failures as one readable message: which node, which op, what TensorRT said, what to try."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_QDQ_HINT = "TensorRT wants symmetric INT8 Q/DQ (zero point 0): model.int8.onnx, not model.int8-cpu.onnx"
_OP_HINTS = {
    "TopK": "TensorRT needs TopK's K constant (≤ 3840); re-export with a fixed image size",
    "GraphAttention": "the fused plugin op needs TensorRT ≥ 10.9 and edge_runtime.kernels.trt_plugin",
    "Cast": "TensorRT 8.5 limits UINT8 to network inputs cast to float; TensorRT ≥ 8.6 is more lenient",
    "QuantizeLinear": _QDQ_HINT,
    "DequantizeLinear": _QDQ_HINT,
    "Resize": "TensorRT supports Resize with constant scales/sizes; re-export with a fixed image size",
}
GENERIC_HINT = ("inspect the graph with `polygraphy inspect model FILE` and compare backends with "
                "`polygraphy run FILE --trt --onnxrt`; a newer TensorRT may support the op")


@dataclass(frozen=True)
class ParserIssue:
    code: str
    desc: str
    node_index: int            # -1 when the error is not about one node
    node_name: str
    node_op: str


def _call(obj: Any, attr: str, default: Any) -> Any:
    fn = getattr(obj, attr, None)
    if fn is None:
        return default
    try:
        return fn() if callable(fn) else fn
    except Exception:  # accessor absent in this TensorRT's binding: keep what we have
        return default


def issue_from_trt(err: Any) -> ParserIssue:
    """node_name/node_operator exist from TensorRT 8.6; on 8.5 only the node index is known."""
    return ParserIssue(code=str(_call(err, "code", "?")).rsplit(".", 1)[-1],
                       desc=str(_call(err, "desc", err)),
                       node_index=int(_call(err, "node", -1)),
                       node_name=str(_call(err, "node_name", "") or ""),
                       node_op=str(_call(err, "node_operator", "") or ""))


def fill_node_names(issues: Sequence[ParserIssue], nodes: Sequence[tuple[str, str]]) -> list[ParserIssue]:
    """Fill missing names/ops from the graph's (name, op_type) node list (TensorRT 8.5 gives only indices)."""
    out = []
    for i in issues:
        if (not i.node_name or not i.node_op) and 0 <= i.node_index < len(nodes):
            name, op = nodes[i.node_index]
            i = ParserIssue(i.code, i.desc, i.node_index, i.node_name or name, i.node_op or op)
        out.append(i)
    return out


def onnx_node_list(onnx_path: str) -> list[tuple[str, str]]:
    """(name, op_type) per node when the `onnx` package is installed (it is optional in the runtime)."""
    try:
        import onnx
    except ImportError:
        return []
    graph = onnx.load(onnx_path, load_external_data=False).graph
    return [(n.name, n.op_type) for n in graph.node]


def format_parser_errors(issues: Sequence[ParserIssue], onnx_name: str, tensorrt_version: str) -> str:
    lines = [f"TensorRT {tensorrt_version} could not parse {onnx_name} ({len(issues)} error(s)):"]
    hints = []
    for i in issues:
        where = f"node #{i.node_index}" if i.node_index >= 0 else "graph"
        if i.node_name:
            where += f" {i.node_name!r}"
        if i.node_op:
            where += f" (op {i.node_op})"
        lines.append(f"  • {where}: [{i.code}] {i.desc}")
        if i.node_op in _OP_HINTS and _OP_HINTS[i.node_op] not in hints:
            hints.append(_OP_HINTS[i.node_op])
    hints.append(GENERIC_HINT)
    lines += [f"Hint: {h}" for h in hints]
    return "\n".join(lines)
