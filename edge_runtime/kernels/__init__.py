"""Fused graph-attention kernels shared by training (PyTorch custom op) and deployment (TensorRT plugin).

Nothing is imported here on purpose: Triton and TensorRT are optional, and the runtime must stay
importable without them. Import `edge_runtime.kernels.graph_attention_triton` or
`edge_runtime.kernels.trt_plugin` explicitly.
"""
