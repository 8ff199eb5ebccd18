"""ONNX export of `slsg::graph_attention` as one custom node for TensorRT (--fused-graph-attention).

The node is `slsg.GraphAttention(h, q, v, rel_pos) -> (max_relative, context, neighbours)` with attributes
k, dilation and plugin_namespace="slsg" (how the TensorRT ONNX parser finds `slsg::GraphAttention`, see
`edge_runtime.kernels.trt_plugin`). ONNX Runtime cannot run it: such a model is for TensorRT ≥ 10.9 only.
The default export stays standard ops: build the model with the reference graph kernel and pass no table.
rel_pos must stay float32 in a float16 model (the plugin declares it so; top-k is fragile in half).

Usage::

    torch.onnx.export(model, args, dynamo=True, custom_translation_table=fused_translation_table())
"""

from collections.abc import Callable

import onnxscript
import torch
from onnx import defs

import slsg.ops.graph_attention  # noqa: F401  (registers torch.ops.slsg.graph_attention)

DOMAIN = "slsg"
OP_TYPE = "GraphAttention"
OPSET_VERSION = 1
PLUGIN_NAMESPACE = "slsg"


def register_onnx_schema() -> None:
    """Declare the node's schema to onnx (once) so onnxscript can emit it and the checker accepts it."""

    if defs.has(OP_TYPE, DOMAIN):
        return
    param = defs.OpSchema.FormalParameter
    attr = defs.OpSchema.Attribute
    attr_type = defs.OpSchema.AttrType
    schema = defs.OpSchema(
        OP_TYPE, DOMAIN, OPSET_VERSION,
        doc="SLSG graph attention: dilated kNN max-relative aggregation and dense softmax context.",
        inputs=[param("h", "T"), param("q", "T"), param("v", "T"), param("rel_pos", "tensor(float)")],
        outputs=[param("max_relative", "T"), param("context", "T"), param("neighbours", "tensor(int32)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "activation type")],
        attributes=[
            attr("k", attr_type.INT, "neighbours ranked before dilation"),
            attr("dilation", attr_type.INT, "keep every dilation-th ranked neighbour"),
            attr("plugin_namespace", attr_type.STRING, "TensorRT plugin namespace"),
        ],
    )
    defs.register_schema(schema)


def _translation() -> Callable:
    register_onnx_schema()
    opset = onnxscript.values.Opset(DOMAIN, OPSET_VERSION)

    def graph_attention(h, q, v, rel_pos, k: int = 27, dilation: int = 3):
        return opset.GraphAttention(h, q, v, rel_pos, k=k, dilation=dilation,
                                    plugin_namespace=PLUGIN_NAMESPACE)

    return graph_attention


def fused_translation_table() -> dict:
    """`custom_translation_table` for torch.onnx.export(dynamo=True) mapping the op to the custom node (the op is
    registered by importing `slsg.ops.graph_attention`, at the top of this file)."""
    return {torch.ops.slsg.graph_attention.default: _translation()}


def fused_nodes(model) -> list:
    """The GraphAttention nodes of an onnx.ModelProto (checks that the fused export happened)."""
    return [node for node in model.graph.node if node.domain == DOMAIN and node.op_type == OP_TYPE]
