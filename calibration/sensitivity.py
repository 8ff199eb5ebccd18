"""Which quantised nodes hurt most, measured cheaply: one run of each model with every node output exposed.

A node's sensitivity is the error it adds: the relative error of its output (INT8 model vs FP32 model)
minus the largest relative error among its data inputs. Errors that merely flow through a node are not
charged to it, so the fallback keeps the culprits in float rather than the layers nearest the output.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from edge_runtime.backends.onnxruntime_backend import cpu_session

FLOAT = onnx.TensorProto.FLOAT


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = list(inferred.graph.value_info) + list(inferred.graph.output)
    return {v.name for v in infos if v.type.tensor_type.elem_type == FLOAT}


def _expose(model_path: Path, names: list[str], out: Path) -> Path:
    model = onnx.load(str(model_path))
    have = {o.name for o in model.graph.output}
    for n in names:
        if n not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(n, FLOAT, None))
    onnx.save(model, str(out))
    return out


def _run(model: Path, images: np.ndarray, names: list[str], as_written: bool = False) -> dict[str, np.ndarray]:
    sess = cpu_session(model, as_written=as_written)
    inp = sess.get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else len(images)
    parts = [sess.run(names, {inp.name: images[i:i + step]}) for i in range(0, len(images), step)]
    return {n: np.concatenate([p[j] for p in parts]) for j, n in enumerate(names)}


def relative_error(ref: np.ndarray, test: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return float(np.mean((test.astype(np.float64) - ref) ** 2) / (np.mean(ref ** 2) + 1e-12))


def _comparable_output(tensor: str, q_names: set[str], consumers: dict) -> str | None:
    """The node's output, or where it went when quantisation folded a following Relu/Clip into the node."""
    while tensor not in q_names:
        after = consumers.get(tensor, [])
        if len(after) != 1 or after[0].op_type not in ("Relu", "Clip"):
            return None
        tensor = after[0].output[0]
    return tensor


def node_sensitivity(fp32: Path, quantized: Path, images: np.ndarray, candidates: list[str],
                     as_written: bool = False) -> list[tuple[str, float]]:
    """(node name, added error) for the candidate nodes of `fp32`, most sensitive first; `quantized` run as
    written where the line runs it so (`onnxruntime_backend.AS_WRITTEN`)."""
    model = onnx.load(str(fp32))
    floats = _float_tensors(model)
    q_names = {o for n in onnx.load(str(quantized), load_external_data=False).graph.node for o in n.output}
    wanted = set(candidates)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {n.name: _comparable_output(n.output[0], q_names, consumers) for n in model.graph.node
               if n.name in wanted and n.output}
    nodes = [n for n in model.graph.node if outputs.get(n.name) in floats]
    tensors = sorted({outputs[n.name] for n in nodes} |
                     {i for n in nodes for i in n.input if i in floats and i in q_names})
    if not nodes:
        return []
    with tempfile.TemporaryDirectory(prefix="slsg-sens-") as tmp:
        ref = _run(_expose(fp32, tensors, Path(tmp) / "fp32.onnx"), images, tensors)
        test = _run(_expose(quantized, tensors, Path(tmp) / "q.onnx"), images, tensors, as_written)
    err = {t: relative_error(ref[t], test[t]) for t in tensors}
    scored = []
    for n in nodes:
        before = max((err[i] for i in n.input if i in err), default=0.0)
        scored.append((n.name, err[outputs[n.name]] - before))
    return sorted(scored, key=lambda s: s[1], reverse=True)
