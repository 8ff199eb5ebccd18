"""Custom PyTorch ops. Importing this package registers `torch.ops.slsg.graph_attention`."""

from slsg.ops.graph_attention import (
    DEFAULT_DILATION,
    DEFAULT_K,
    graph_attention_fused,
    graph_attention_reference,
)

__all__ = ["DEFAULT_DILATION", "DEFAULT_K", "graph_attention_fused", "graph_attention_reference"]
