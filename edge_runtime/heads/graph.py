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

from edge_runtime.backends.base import HEAD_PREFIX, MAP_OUTPUT
from edge_runtime.backends.onnxruntime_backend import cpu_session
from edge_runtime.backends.openvino_backend import ImagePass, as_openvino_runs_it, compile_config, compile_cpu
from edge_runtime.backends.passes import pass_workers, run_batches, session_threads
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
    rule: str | None = None             # the fused score's rule (max or mean), None where it ends another way


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
        found.location, found.inv_scale, found.index, found.rule = fusion
        local = _fusion_of(LOCAL_OUTPUT, consumers, init)
        search = next((n for n in consumers.get(LOCAL_MEMORY, []) if n.op_type == "MatMul"), None)
        if local is not None and local[:2] == fusion[:2] and search is not None:
            found.local_index, found.local_patches = local[2], search.input[0]
        slsg = _fusion_of(SLSG_OUTPUT, consumers, init)
        if slsg is not None and slsg[:2] == fusion[:2]:
            found.slsg_index = slsg[2]
    return found


#: the reduction `ScoreFusion` ends in → its rule (`slsg.heads.fusion.FusionConfig.rule`)
FUSION_RULES = {"ReduceMax": "max", "ReduceMean": "mean"}


def _fusion_of(output: str, consumers: dict, init: set[str]) -> tuple[str, str, int, str | None] | None:
    """(location, inv_scale, index, rule) of `ScoreFusion` on `output`: Unsqueeze → Concat → Sub(location) →
    Mul(inv) → ReduceMax or ReduceMean."""
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
    ends = [n.op_type for n in consumers.get(mul.output[0], [])]
    rule = FUSION_RULES.get(ends[0]) if len(ends) == 1 else None
    return (location, inv_scale, index, rule) if location and inv_scale else None


Run = Callable[[np.ndarray], "dict[str, np.ndarray]"]
#: OpenVINO precisions whose refit passes run on every stream at once: f32 arithmetic, where two one-thread streams
#: gave the line's one two-thread stream's values to the bit (juice_bottle 512×256, the u8 file, 40 images)
STREAMED = frozenset({"int8"})


@dataclass
class Describer:
    """One library's way of computing what the heads' refit needs — `run(batch) -> {tensor: value}` for the
    descriptor, the local head's N×P×(D'+1) patches and SLSG's score — with the batch size it takes. `trunk` makes
    the run of `trunk_graph`, the descriptor and the patches alone; `part` says which of the two `run` is."""

    run: Run
    batch: int = 8
    library: str = "ONNX Runtime"
    trunk: Callable[[], Run] | None = None
    part: str = "whole graph"
    workers: int = 1  # batches run at once (`passes.run_batches`): >1 only for a `run` that is thread-safe

    def for_training(self, images: np.ndarray) -> Describer:
        """What the training images need — the descriptor and the patches, not the heads' scores — computed by the
        trunk alone where it gives exactly the whole graph's values on the first batch of `images`, else by the
        whole graph.

        The trunk skips SLSG's decoder, most of the graph's work (juice_bottle 512×256, the symmetric INT8 file:
        0.057 s against 0.15 s an image in ONNX Runtime, 0.025 s against 0.066 s in OpenVINO). Exactness is checked,
        not assumed: a library compiles a graph around what it must compute, and values move with the fusion."""
        if self.trunk is None or not len(images):
            return self
        sample, alone = images[:self.batch], self.trunk()
        whole, cut = self.run(sample), alone(sample)
        if all(np.array_equal(whole[name], value) for name, value in cut.items()):
            return Describer(alone, self.batch, self.library, part="trunk", workers=self.workers)
        return self


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


def nodes_computing(graph: onnx.GraphProto, tensors: list[str]) -> set[int]:
    """The positions in `graph.node` of the nodes `tensors` are computed from: their producers, and those of every
    input of those. (Positions, not the node objects: protobuf may hand out a new object for the same node.)"""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    needed: set[int] = set()
    stack = list(tensors)
    while stack:
        i = producer.get(stack.pop())
        if i is not None and i not in needed:
            needed.add(i)
            stack.extend(x for x in graph.node[i].input if x)
    return needed


def trunk_graph(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """The part of the graph that computes `tensors`, which are its outputs.

    ONNX Runtime fuses a node with its readers (Q/DQ pairs into integer kernels, a convolution with its activation),
    so the part must keep the readers that decide those fusions: every Quantize/DequantizeLinear that reads what the
    part computes stays in it, and every tensor the rest of the graph still reads stays an output. Without them the
    INT8 files' descriptors moved by up to 17 of a mean magnitude of 3 (juice_bottle 512×256); with them ONNX Runtime
    gives the whole graph's values exactly (`Describer.for_training` checks that on every file)."""
    g = model.graph
    nodes = list(g.node)
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for x in node.input:
            readers.setdefault(x, []).append(i)
    needed = nodes_computing(g, tensors)
    frontier = [out for i in needed for out in nodes[i].output]
    while frontier:  # the Q/DQ readers of what the part computes, and theirs
        for r in readers.get(frontier.pop(), []):
            if r not in needed and nodes[r].op_type in ("QuantizeLinear", "DequantizeLinear"):
                needed.add(r)
                frontier.extend(nodes[r].output)
    kept = [n for i, n in enumerate(nodes) if i in needed]
    made = {out for n in kept for out in n.output}
    shared = {x for i, n in enumerate(nodes) if i not in needed for x in n.input if x in made}
    shared |= {o.name for o in g.output if o.name in made}
    types = tensor_types(model)
    outputs = [onnx.helper.make_tensor_value_info(t, types.get(t, onnx.TensorProto.FLOAT), None)
               for t in dict.fromkeys([*tensors, *sorted(shared)])]
    used = {x for n in kept for x in n.input}
    part = onnx.helper.make_graph(kept, f"{g.name}_trunk", list(g.input), outputs,
                                  [t for t in g.initializer if t.name in used])
    return onnx.helper.make_model(part, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of each tensor shape inference can name (a quantised tensor is int8 or uint8, not float)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    return {v.name: v.type.tensor_type.elem_type for v in infos if v.type.tensor_type.elem_type}


#: each head's own score, as the graph outputs it
HEAD_OUTPUTS = {"slsg": SLSG_OUTPUT, "global": GLOBAL_OUTPUT, "local": LOCAL_OUTPUT}


def _seen(model: onnx.ModelProto, head: HeadTensors) -> list[str]:
    """What a pass through the whole graph fetches: the features, each head's score and SLSG's anomaly map (which no
    refit changes, so the export's gate can judge a refitted file from the pass its refit made)."""
    outputs = {o.name for o in model.graph.output}
    return _features(head) + [name for name in (*HEAD_OUTPUTS.values(), MAP_OUTPUT) if name in outputs]


def _features(head: HeadTensors) -> list[str]:
    """What the training images are run for: the pooled descriptor and the local head's patches."""
    return [head.descriptor] + ([head.local_patches] if head.local_patches else [])


def _trunk(model: onnx.ModelProto, head: HeadTensors) -> onnx.ModelProto:
    """`trunk_graph` of the features and of the fitted heads' own scores: everything but SLSG's decoder. With the
    heads in it OpenVINO compiles the part as it compiles the whole graph (without them the local head's patches
    moved by up to 0.19 of a mean magnitude of 3.5, in two values of three)."""
    outputs = {o.name for o in model.graph.output}
    return trunk_graph(model, _features(head) + [t for t in (GLOBAL_OUTPUT, LOCAL_OUTPUT) if t in outputs])


def onnxruntime_describer(model: onnx.ModelProto, head: HeadTensors, as_written: bool = False) -> Describer:
    """What ONNX Runtime computes for the heads, as the line runs the file (`as_written`: its Q/DQ as written,
    `onnxruntime_backend.AS_WRITTEN`)."""
    wanted = _seen(model, head)
    workers = pass_workers()

    def session(graph: onnx.ModelProto, names: list[str]) -> Run:
        sess = cpu_session(graph.SerializeToString(), session_threads(workers), as_written=as_written)
        name = sess.get_inputs()[0].name
        return lambda batch: dict(zip(names, sess.run(names, {name: batch})))

    fixed = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    return Describer(session(probe_graph(model, wanted), wanted), fixed or 8,
                     trunk=lambda: session(_trunk(model, head), _features(head)), workers=workers)


def openvino_describer(model: onnx.ModelProto, head: HeadTensors, precision: str = "int8") -> Describer:
    """What `edge_runtime.backends.OpenVinoBackend` computes at `precision` (int8: an INT8 file, the same in-memory
    edits and f32 hint; bf16: model.onnx in bf16 arithmetic), one image at a time as the line runs it. In f32
    arithmetic (int8) the images go through OpenVINO's streams at once (`ImagePass`: the line's values to the bit);
    bf16 keeps the line's one stream, where the rounding may follow the threads."""

    def compiled(graph: onnx.ModelProto, names: list[str]) -> Run:
        as_openvino_runs_it(graph, precision)
        if precision in STREAMED:
            return ImagePass(graph.SerializeToString(), precision, names)
        request = compile_cpu(graph.SerializeToString(), compile_config(precision)).create_infer_request()

        def run(batch: np.ndarray) -> dict[str, np.ndarray]:
            request.infer({"image": batch})
            return {t: np.array(request.get_tensor(t).data, copy=True) for t in names}

        return run

    wanted = _seen(model, head)
    whole = compiled(probe_graph(model, wanted), wanted)
    return Describer(whole, 2 * whole.jobs if isinstance(whole, ImagePass) else 1,
                     "OpenVINO" if precision == "int8" else f"OpenVINO {precision}",
                     trunk=lambda: compiled(_trunk(model, head), _features(head)))


@dataclass
class Seen:
    """What the refit sees of some images: descriptors N×D, the local head's patch rows (N·P)×D', and each head's own
    score (head name → N scores)."""

    descriptors: np.ndarray
    rows: np.ndarray | None
    per_image: int = 0
    heads: dict = field(default_factory=dict)
    maps: np.ndarray | None = None   # N×H×W anomaly maps, where the pass was asked to keep them

    @staticmethod
    def join(parts: list[Seen]) -> Seen:
        """What was seen of the images of every part, in that order."""
        rows = [p.rows for p in parts]
        maps = [p.maps for p in parts]
        return Seen(np.concatenate([p.descriptors for p in parts]),
                    None if any(r is None for r in rows) else np.concatenate(rows),
                    parts[0].per_image, {k: np.concatenate([p.heads[k] for p in parts]) for k in parts[0].heads},
                    None if any(m is None for m in maps) else np.concatenate(maps))

    def take(self, order: np.ndarray) -> Seen:
        """What was seen of images `order` (indices into these), in that order."""
        rows = None
        if self.rows is not None:
            rows = self.rows.reshape(len(self.descriptors), self.per_image, -1)[order].reshape(-1, self.rows.shape[1])
        return Seen(self.descriptors[order], rows, self.per_image, {k: v[order] for k, v in self.heads.items()},
                    None if self.maps is None else self.maps[order])

    def first(self, n: int) -> Seen:
        """What was seen of the first `n` images."""
        rows = None if self.rows is None else self.rows[:n * self.per_image]
        return Seen(self.descriptors[:n], rows, self.per_image, {k: v[:n] for k, v in self.heads.items()},
                    None if self.maps is None else self.maps[:n])


def descriptors(describe: Describer, images: np.ndarray, head: HeadTensors, label: str = "descriptors",
                maps: bool = False) -> Seen:
    """What `describe` computes for each image (the local head's patches without their appended 1); with `maps`,
    the anomaly maps too."""
    progress = ProgressLines(label, len(images), unit="image")
    out, rows, per_image, kept = [], [], 0, []
    scores: dict[str, list] = {}
    for _, got in run_batches(describe.run, images, describe.batch, describe.workers):
        out.append(got[head.descriptor])
        if maps and MAP_OUTPUT in got:
            kept.append(np.asarray(got[MAP_OUTPUT], dtype=np.float32).reshape(len(out[-1]), *images.shape[1:3]))
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
                {name: np.concatenate(v).astype(np.float64) for name, v in scores.items()},
                np.concatenate(kept) if kept else None)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    """A copy of the initializer `name` of `model`."""
    return onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).copy()
