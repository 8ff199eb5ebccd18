"""Which nodes of the exported graph stay in float, found from the graph's structure, not from names.

Four regions: the in-graph pre-processing (Cast/Div/Sub/Transpose before the first conv: it works on raw
pixels and costs nothing), the graph-attention block (similarity MatMul, TopK, Gather, Softmax and the path
from the q/k projections to them: top-k neighbour selection turns a small perturbation into a different
neighbour), the scoring head after the last weighted layer (softmax map, top-k mean score), and the global
head's statistics (everything after the spatial pooling of feature maps: standardisation, the whitening MatMul
and the distance — a Mahalanobis distance multiplies small descriptor errors by the precision matrix), and the
local head's patch search (what feeds a head's own map, `map_<head>`, and not SLSG's: the neighbourhood
averaging, the MatMul against the memory, the minimum — a nearest-neighbour choice is as fragile as top-k).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import onnx

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
ANCHOR_OPS = ("TopK", "Gather", "GatherElements", "GatherND", "Softmax")
#: Spatial pooling of a feature map into a per-image descriptor: where the global head's statistics start.
POOL_OPS = ("ReduceMean", "ReduceMax", "GlobalAveragePool", "GlobalMaxPool")
MAP_OUTPUT = "anomaly_map"
#: A head's own map output (`map_local`): everything that feeds it and not SLSG's map is the patch search.
HEAD_MAP_PREFIX = "map_"
#: Ops whose output is a shape, never a pixel: walking through them would drag the whole net along.
SHAPE_OPS = ("Shape", "Size")


@dataclass
class FloatRegions:
    preprocess: list[str]
    graph_block: list[str]
    head: list[str]
    global_head: list[str] = field(default_factory=list)     # after the pooling: statistics and distance
    global_context: list[str] = field(default_factory=list)  # what feeds only the pooling (context convolutions)
    patch_head: list[str] = field(default_factory=list)      # the local head's patch features and memory search

    def all(self, context: bool = True) -> list[str]:
        """Every node that stays float; `context=False` lets the global head's context stage be quantised."""
        nodes = (set(self.preprocess) | set(self.graph_block) | set(self.head) | set(self.global_head)
                 | set(self.patch_head))
        return sorted(nodes | set(self.global_context) if context else nodes)

    def to_dict(self) -> dict:
        return {"preprocess": self.preprocess, "graph_block": self.graph_block, "head": self.head,
                "global_head": self.global_head, "global_context": self.global_context,
                "patch_head": self.patch_head}


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name: `nodes_to_exclude` can only refer to named nodes."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)
    return model


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.constants = {i.name for i in model.graph.initializer}
        self.constants |= {o for n in self.nodes if n.op_type == "Constant" for o in n.output}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)
        self.shape_derived = self._shape_derived()

    def _shape_derived(self) -> set[str]:
        """Nodes that compute only shapes (Shape → Gather → Concat → Reshape's 2nd input)."""
        derived: set[str] = set()
        tensors = set(self.constants)
        for n in self.nodes:  # ONNX graphs are topologically sorted
            ins = [i for i in n.input if i]
            if n.op_type in SHAPE_OPS or n.op_type == "Constant" or (ins and all(i in tensors for i in ins)):
                derived.add(n.name)
                tensors.update(n.output)
        return derived

    def is_weighted(self, n: onnx.NodeProto) -> bool:
        return n.op_type in WEIGHTED_OPS and any(i in self.constants for i in n.input[1:2])

    def data_inputs(self, n: onnx.NodeProto) -> list[onnx.NodeProto]:
        return [self.producer[i] for i in n.input if i in self.producer and i not in self.constants
                and self.producer[i].name not in self.shape_derived]

    def data_consumers(self, n: onnx.NodeProto) -> list[onnx.NodeProto]:
        return [c for o in n.output for c in self.consumers.get(o, []) if c.name not in self.shape_derived]

    def closure(self, start: list[onnx.NodeProto], step, stop) -> set[str]:
        seen: set[str] = set()
        todo = list(start)
        while todo:
            n = todo.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            if not stop(n):
                todo.extend(step(n))
        return seen


def find_float_regions(model: onnx.ModelProto) -> FloatRegions:
    """The three float regions of a (pre-processed, fully named) model; see the module docstring.

    The head includes the weighted layers that feed it directly (the logits convs), so no Q/DQ pair sits
    between the logits and the softmax."""
    g = _Graph(model)
    weighted = [n for n in g.nodes if g.is_weighted(n)]
    if not weighted:
        return FloatRegions([], [], [])
    below_weighted = g.closure([c for w in weighted for c in g.data_consumers(w)], g.data_consumers,
                               lambda n: False)
    above_weighted = g.closure([p for w in weighted for p in g.data_inputs(w)], g.data_inputs,
                               lambda n: False)
    weighted_names = {w.name for w in weighted}
    preprocess = sorted(n.name for n in g.nodes if n.name in above_weighted and n.name not in below_weighted
                        and n.name not in weighted_names and n.name not in g.shape_derived)
    head = sorted(n.name for n in g.nodes if n.name in below_weighted and n.name not in above_weighted
                  and n.name not in weighted_names and n.name not in g.shape_derived)
    # The layers that produce the logits stay float too: otherwise their quantised output feeds the softmax.
    head_set = set(head)
    logits = {w.name for w in weighted if any(c.name in head_set for c in g.data_consumers(w))}
    head = sorted(head_set | logits)
    anchors = [n for n in g.nodes if n.op_type in ANCHOR_OPS and n.name not in g.shape_derived
               and n.name not in head and n.name not in preprocess]
    back = g.closure(anchors, g.data_inputs, g.is_weighted)
    forward = g.closure(anchors, g.data_consumers, g.is_weighted)
    # The q/k/v projections stay float (their outputs feed the similarity directly); the first weighted
    # layer after the block is ordinary network and is quantised.
    block = (back | (forward - weighted_names)) - set(head) - set(preprocess)
    # The global head: what follows a spatial pooling and feeds only image scores, never the anomaly map.
    map_ancestors = g.closure([g.producer[o.name] for o in model.graph.output if o.name == MAP_OUTPUT
                               and o.name in g.producer], g.data_inputs, lambda n: False)
    # Everything that feeds image scores only: the Mahalanobis distance multiplies small quantisation errors by
    # the precision matrix. The context stage before the pooling is a region of its own: quantised, it cost
    # bottle's u8 model 0.16 AUROC (before each file's head was refitted); with the refit the symmetric file
    # passes with it quantised (calibration.int8.CONTEXT_IN_INT8). The head costs 6 % of the MACs.
    # The patch search: everything a head's own map depends on beyond SLSG's network, and what it feeds (its
    # image score). A region of its own, so that no flavour quantises it.
    head_maps = [g.producer[o.name] for o in model.graph.output
                 if o.name.startswith(HEAD_MAP_PREFIX) and o.name in g.producer]
    patch = g.closure(head_maps, g.data_inputs, lambda n: n.name in map_ancestors) - map_ancestors
    patch = (patch | g.closure([n for n in g.nodes if n.name in patch], g.data_consumers, lambda n: False)) \
        - map_ancestors - g.shape_derived
    head = sorted(set(head) - patch)
    others = map_ancestors | set(head) | block | set(preprocess)
    pools = [n for n in g.nodes if n.op_type in POOL_OPS and n.name not in g.shape_derived
             and n.name not in map_ancestors and n.name not in patch]
    pooled = g.closure(pools, g.data_consumers, lambda n: False) - others - patch
    context = g.closure(pools, g.data_inputs, lambda n: False) - g.shape_derived - others - pooled - patch
    return FloatRegions(preprocess=preprocess, graph_block=sorted(block), head=head, global_head=sorted(pooled),
                        global_context=sorted(context), patch_head=sorted(patch))
