"""Where the fitted heads live in an exported graph, and what a model file computes for them: torch-free.

The global head's Gaussian, the local head's patch memory and the fused score's per-head normalisation are
initializers of `model.onnx` (and of each INT8 file). Refitting them — at export for each INT8 file, and on the line
from confirmed-good frames — needs the tensors the heads read (the pooled descriptor, the local head's patches,
SLSG's score) as that very file computes them: `find_head` locates them, a `Describer` runs the whole graph with
them as extra outputs (ONNX Runtime, or OpenVINO as the line runs an INT8 file) and `descriptors` collects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge_runtime.backends.base import HEAD_PREFIX
from edge_runtime.backends.onnxruntime_backend import cpu_session
from edge_runtime.backends.openvino_backend import INFERENCE_PRECISION, as_openvino_runs_it, compile_cpu
from edge_runtime.optional import onnx
from edge_runtime.progress import ProgressLines

#: Initializers `slsg.inference.DeployModel` exports for the head (its module path, kept by torch.onnx).
HEAD_TENSORS = {k: f"deploy.global_head.{k}" for k in ("mean", "inv_std", "whiten")}
GLOBAL_OUTPUT = HEAD_PREFIX + "global"
LOCAL_OUTPUT = HEAD_PREFIX + "local"
SLSG_OUTPUT = HEAD_PREFIX + "slsg"
LOCAL_MEMORY = "deploy.local_head.memory"  # the (D+1)×M columns `slsg.heads.local_patch.memory_columns` makes


@dataclass
class HeadTensors:
    """Where the head's statistics and its normalisation live in one ONNX graph."""

    descriptor: str                     # the pooled descriptor the head's first Sub reads
    location: str | None = None         # the fusion's per-head location / inverse scale vectors …
    inv_scale: str | None = None
    index: int = 0                      # … and the global head's position in them
    local_index: int | None = None      # the local head's position in the same vectors, when it is fused
    local_patches: str | None = None    # the patches (with a 1 appended) the local head's search multiplies
    slsg_index: int | None = None       # SLSG's position in the fusion vectors


def find_head(model: onnx.ModelProto) -> HeadTensors | None:
    """The head's tensors in `model`; None when it has no global head (an SLSG-only RUN)."""
    g = model.graph
    init = {i.name for i in g.initializer}
    if not all(name in init for name in HEAD_TENSORS.values()):
        if any(o.name == GLOBAL_OUTPUT for o in g.output):
            raise ValueError(f"the graph has {GLOBAL_OUTPUT} but not the head's initializers "
                             f"{', '.join(HEAD_TENSORS.values())}: exported by another path")
        return None
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    sub = next((n for n in consumers.get(HEAD_TENSORS["mean"], []) if n.op_type == "Sub"), None)
    if sub is None:
        raise ValueError("the global head's mean is not subtracted from a descriptor: not a graph slsg exported")
    found = HeadTensors(descriptor=next(x for x in sub.input if x != HEAD_TENSORS["mean"]))
    fusion = _fusion_of(GLOBAL_OUTPUT, consumers, init)
    if fusion is not None:
        found.location, found.inv_scale, found.index = fusion
        local = _fusion_of(LOCAL_OUTPUT, consumers, init)
        search = next((n for n in consumers.get(LOCAL_MEMORY, []) if n.op_type == "MatMul"), None)
        if local is not None and local[:2] == fusion[:2] and search is not None:
            found.local_index, found.local_patches = local[2], search.input[0]
        slsg = _fusion_of(SLSG_OUTPUT, consumers, init)
        if slsg is not None and slsg[:2] == fusion[:2]:
            found.slsg_index = slsg[2]
    return found


def _fusion_of(output: str, consumers: dict, init: set[str]) -> tuple[str, str, int] | None:
    """(location, inv_scale, index) of `ScoreFusion` on `output`: Unsqueeze → Concat → Sub(location) → Mul(inv)."""
    unsq = next((n for n in consumers.get(output, []) if n.op_type == "Unsqueeze"), None)
    concat = next((n for n in consumers.get(unsq.output[0], []) if n.op_type == "Concat"), None) if unsq else None
    if concat is None:
        return None
    index = list(concat.input).index(unsq.output[0])
    sub = next((n for n in consumers.get(concat.output[0], []) if n.op_type == "Sub"), None)
    mul = next((n for n in consumers.get(sub.output[0], []) if n.op_type == "Mul"), None) if sub else None
    if mul is None:
        return None
    location = next((x for x in sub.input if x in init), None)
    inv_scale = next((x for x in mul.input if x in init), None)
    return (location, inv_scale, index) if location and inv_scale else None


@dataclass
class Describer:
    """One library's way of computing what the heads' refit needs — `run(batch) -> {tensor: value}` for the
    descriptor, the local head's N×P×(D'+1) patches and SLSG's score — with the batch size it takes."""

    run: Callable[[np.ndarray], dict[str, np.ndarray]]
    batch: int = 8
    library: str = "ONNX Runtime"


def probe_graph(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of the whole graph with `tensors` (the pooled descriptor, the local head's patches) as extra outputs.

    The whole graph, not the trunk alone: ONNX Runtime fuses a Q/DQ graph around what it must compute, and on the
    symmetric INT8 file the trunk cut out on its own gave other descriptors than the file does (juice_bottle
    512×256: up to 17.7 against a mean magnitude of 3.2), so a head fitted on them would not fit the file."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    for tensor in (t for t in tensors if t not in outputs):
        probe.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    return probe


#: each head's own score, as the graph outputs it
HEAD_OUTPUTS = {"slsg": SLSG_OUTPUT, "global": GLOBAL_OUTPUT, "local": LOCAL_OUTPUT}


def _seen(model: onnx.ModelProto, head: HeadTensors) -> list[str]:
    outputs = {o.name for o in model.graph.output}
    return ([head.descriptor] + ([head.local_patches] if head.local_patches else [])
            + [name for name in HEAD_OUTPUTS.values() if name in outputs])


def onnxruntime_describer(model: onnx.ModelProto, head: HeadTensors) -> Describer:
    wanted = _seen(model, head)
    sess = cpu_session(probe_graph(model, wanted).SerializeToString())
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(wanted, sess.run(wanted, {name: batch})))

    return Describer(run, fixed if isinstance(fixed, int) and fixed > 0 else 8)


def openvino_describer(model: onnx.ModelProto, head: HeadTensors, precision: str = "int8") -> Describer:
    """What `edge_runtime.backends.OpenVinoBackend` computes at `precision` (int8: an INT8 file, the same in-memory
    edits and f32 hint; bf16: model.onnx in bf16 arithmetic), one image at a time as the line runs it."""
    wanted = _seen(model, head)
    probe = probe_graph(model, wanted)
    as_openvino_runs_it(probe, precision)
    request = compile_cpu(probe.SerializeToString(),
                          {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision]}).create_infer_request()

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        request.infer({"image": batch})
        return {t: np.array(request.get_tensor(t).data, copy=True) for t in wanted}

    return Describer(run, 1, "OpenVINO" if precision == "int8" else f"OpenVINO {precision}")


@dataclass
class Seen:
    """What the refit sees of some images: descriptors N×D, the local head's patch rows (N·P)×D', and each head's own
    score (head name → N scores)."""

    descriptors: np.ndarray
    rows: np.ndarray | None
    per_image: int = 0
    heads: dict = field(default_factory=dict)


def descriptors(describe: Describer, images: np.ndarray, head: HeadTensors, label: str = "descriptors") -> Seen:
    """What `describe` computes for each image (the local head's patches without their appended 1)."""
    progress = ProgressLines(label, len(images), unit="image")
    out, rows, per_image = [], [], 0
    scores: dict[str, list] = {}
    for i in range(0, len(images), describe.batch):
        got = describe.run(images[i:i + describe.batch])
        out.append(got[head.descriptor])
        if head.local_patches in got:
            patches = got[head.local_patches]
            per_image = patches.shape[1]
            rows.append(patches[..., :-1].reshape(-1, patches.shape[2] - 1).astype(np.float32))
        for name, output in HEAD_OUTPUTS.items():
            if output in got:
                scores.setdefault(name, []).append(np.ravel(got[output]))
        progress.update(advance=len(out[-1]))
    progress.close()
    return Seen(np.concatenate(out).astype(np.float64), np.concatenate(rows) if rows else None, per_image,
                {name: np.concatenate(v).astype(np.float64) for name, v in scores.items()})


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    """A copy of the initializer `name` of `model`."""
    return onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).copy()
