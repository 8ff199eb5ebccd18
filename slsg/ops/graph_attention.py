"""The Grapher's graph attention as one PyTorch custom op: `slsg::graph_attention`.

Semantics (reference §1.3, per image; node tensors are (B, C, N) with N = H·W in raster order):

* max_relative[b, c, i] = max over the neighbours n of i of (h[b, c, n] − h[b, c, i]); the neighbours are
  ranks 0, d, 2d, … (< k) of score[i, :] = cos(q̂ᵢ, q̂ⱼ) + R[i, j] sorted descending, ties to the smaller j
  (the tie rule of `slsg.model.graph.knn_neighbours` and of the Triton kernel);
* context[b, c, i] = Σⱼ softmax_j(qᵢ·qⱼ) v[b, c, j]  (unscaled logits);
* neighbours[b, i, :] = the chosen node indices (int32), carried for the backward and for checks.

On CUDA the op launches the fused Triton kernel (`edge_runtime.kernels.graph_attention_triton`); on every
other device it runs the pure-torch reference below, which uses the same tie rule. Gradients: h through
the max-relative gather/max, q and v through the dense softmax; the kNN selection carries none. Where
several neighbours tie for the max, the gradient is split evenly among them — `torch.amax`'s rule, which the
reference layer (`slsg.model.graph.max_relative`) trains with — so both paths train the same weights.
"""

from types import ModuleType
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_K = 27
DEFAULT_DILATION = 3


# ---------------------------------------------------------------- reference math (pure torch)

def _acc(x: Tensor) -> Tensor:
    """Accumulation type: float32 for float16/float32, float64 kept (gradcheck)."""
    return x if x.dtype == torch.float64 else x.float()


def knn_neighbours_reference(q: Tensor, rel_pos: Tensor, k: int = DEFAULT_K,
                             dilation: int = DEFAULT_DILATION) -> Tensor:
    """Dilated top-k neighbour indices (B, N, ceil(k/dilation)) int32; a stable sort breaks ties by index."""
    qn = F.normalize(_acc(q), dim=1)
    score = qn.transpose(1, 2) @ qn + rel_pos.to(qn.dtype)
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices
    return order[..., :k:dilation].to(torch.int32)


def _gather_nodes(x: Tensor, neighbours: Tensor) -> Tensor:
    """x (B, C, N) at neighbours (B, N, M) → (B, C, N, M)."""
    b, c, n = x.shape
    m = neighbours.shape[-1]
    index = neighbours.long().reshape(b, 1, n * m).expand(b, c, n * m)
    return x.gather(2, index).reshape(b, c, n, m)


def max_relative_reference(h: Tensor, neighbours: Tensor) -> Tensor:
    """max over neighbours of h[:, :, n] − h[:, :, i], computed in float32 (differentiable in h)."""
    hf = _acc(h)
    diff = _gather_nodes(hf, neighbours) - hf.unsqueeze(-1)
    return diff.amax(dim=-1).to(h.dtype)


def dense_attention_context_reference(q: Tensor, v: Tensor) -> Tensor:
    """softmax_row(qᵀq) applied to v in node layout: (B, C, N), computed in float32 (differentiable)."""
    qf = _acc(q)
    attention = torch.softmax(qf.transpose(1, 2) @ qf, dim=-1)
    return (_acc(v) @ attention.transpose(1, 2)).to(v.dtype)


# The Triton kernel takes float32/float16; the reference also float64 (gradcheck).
_DTYPES = {True: (torch.float32, torch.float16), False: (torch.float32, torch.float16, torch.float64)}


def _check_inputs(h: Tensor, q: Tensor, v: Tensor, rel_pos: Tensor, k: int, dilation: int) -> None:
    if h.dim() != 3 or q.dim() != 3 or v.dim() != 3:
        shapes = f"{tuple(h.shape)}, {tuple(q.shape)}, {tuple(v.shape)}"
        raise ValueError(f"h, q, v must be (B, C, N) node tensors; got {shapes}")
    b, c, n = h.shape
    if q.shape[0] != b or q.shape[2] != n or tuple(v.shape) != (b, c, n):
        shapes = f"h {tuple(h.shape)}, q {tuple(q.shape)}, v {tuple(v.shape)}"
        raise ValueError(f"shape mismatch: {shapes}; expected h, v (B, C, N) and q (B, Cq, N)")
    if tuple(rel_pos.shape) != (n, n):
        raise ValueError(f"rel_pos must be (N, N) = ({n}, {n}), got {tuple(rel_pos.shape)}")
    if k < 1 or dilation < 1 or n < k:
        raise ValueError(f"need 1 <= k <= N and dilation >= 1, got k={k}, dilation={dilation}, N={n}")
    if not (h.dtype == q.dtype == v.dtype) or h.dtype not in _DTYPES[h.device.type == "cuda"]:
        raise TypeError(f"h, q, v must share one dtype of {_DTYPES[h.device.type == 'cuda']}; "
                        f"got {h.dtype}, {q.dtype}, {v.dtype}")


def _squeeze_rel(rel_pos: Tensor) -> Tensor:
    """Accept the reference's stored 1×N×N table as well as N×N."""
    return rel_pos[0] if rel_pos.dim() == 3 and rel_pos.shape[0] == 1 else rel_pos


def _node_layout(x: Tensor) -> Tensor:
    """Accept the Grapher's B×C×N×1 layout as well as B×C×N."""
    return x.squeeze(-1) if x.dim() == 4 and x.shape[-1] == 1 else x


def graph_attention_reference(h: Tensor, q: Tensor, v: Tensor, rel_pos: Tensor, k: int = DEFAULT_K,
                              dilation: int = DEFAULT_DILATION) -> tuple[Tensor, Tensor]:
    """Pure-torch graph attention: returns (max_relative, context), both shaped like h (B, C, N).

    h, q, v may also be B×C×N×1; rel_pos may be N×N or 1×N×N. Autograd flows through torch itself.
    """
    h, q, v, rel_pos = _node_layout(h), _node_layout(q), _node_layout(v), _squeeze_rel(rel_pos)
    _check_inputs(h, q, v, rel_pos, k, dilation)
    neighbours = knn_neighbours_reference(q.detach(), rel_pos, k, dilation)
    return max_relative_reference(h, neighbours), dense_attention_context_reference(q, v)


def graph_attention_fused(h: Tensor, q: Tensor, v: Tensor, rel_pos: Tensor, k: int = DEFAULT_K,
                          dilation: int = DEFAULT_DILATION) -> tuple[Tensor, Tensor]:
    """Same contract as `graph_attention_reference`, through the `slsg::graph_attention` custom op."""
    h, q, v, rel_pos = _node_layout(h), _node_layout(q), _node_layout(v), _squeeze_rel(rel_pos)
    max_relative, context, _ = torch.ops.slsg.graph_attention(h, q, v, rel_pos, k, dilation)
    return max_relative, context


# ---------------------------------------------------------------- the custom op

@torch.library.custom_op("slsg::graph_attention", mutates_args=())
def graph_attention_op(h: Tensor, q: Tensor, v: Tensor, rel_pos: Tensor, k: int = DEFAULT_K,
                       dilation: int = DEFAULT_DILATION) -> tuple[Tensor, Tensor, Tensor]:
    """(max_relative, context, neighbours) — the reference everywhere but CUDA."""
    _check_inputs(h, q, v, rel_pos, k, dilation)
    neighbours = knn_neighbours_reference(q, rel_pos, k, dilation)
    return max_relative_reference(h, neighbours), dense_attention_context_reference(q, v), neighbours


@graph_attention_op.register_kernel("cuda")
def _graph_attention_cuda(h: Tensor, q: Tensor, v: Tensor, rel_pos: Tensor, k: int = DEFAULT_K,
                          dilation: int = DEFAULT_DILATION) -> tuple[Tensor, Tensor, Tensor]:
    _check_inputs(h, q, v, rel_pos, k, dilation)
    return run_triton(h, q, v, rel_pos, k, dilation)


def run_triton(h: Tensor, q: Tensor, v: Tensor, rel_pos: Tensor, k: int = DEFAULT_K,
               dilation: int = DEFAULT_DILATION, tiles: Optional[object] = None,
               kernels: Optional[ModuleType] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the fused Triton kernel; no autograd, no input checks (the op does those).

    `kernels` defaults to `edge_runtime.kernels.graph_attention_triton`; tests pass a copy loaded
    under TRITON_INTERPRET=1 to run the same kernel on the CPU.
    """
    if kernels is None:
        from edge_runtime.kernels import graph_attention_triton as kernels

    h, q, v = h.contiguous(), q.contiguous(), v.contiguous()
    rel_pos = rel_pos.float().contiguous()  # R stays float32 even for float16 activations
    b, c, n = h.shape
    max_relative = torch.empty_like(h)
    context = torch.empty_like(h)
    neighbours = torch.empty((b, n, kernels.neighbour_count(k, dilation)), dtype=torch.int32, device=h.device)
    kernels.launch(h, q, v, rel_pos, max_relative, context, neighbours, k, dilation,
                   tiles if tiles is not None else kernels.TileConfig())
    return max_relative, context, neighbours


@graph_attention_op.register_fake
def _graph_attention_fake(h: Tensor, q: Tensor, v: Tensor, rel_pos: Tensor, k: int = DEFAULT_K,
                          dilation: int = DEFAULT_DILATION) -> tuple[Tensor, Tensor, Tensor]:
    b, _, n = h.shape
    neighbours = h.new_empty((b, n, len(range(0, k, dilation))), dtype=torch.int32)
    return torch.empty_like(h), torch.empty_like(h), neighbours


# ---------------------------------------------------------------- autograd (reference-math backward)

def max_relative_backward(h: Tensor, neighbours: Tensor, grad: Tensor) -> Tensor:
    """d/dh of max_n(h[n] − h[i]): −grad at the centre, +grad split evenly among the neighbours that tie
    for the max (torch.amax's backward, the reference layer's rule)."""
    hf = _acc(h)
    gf = grad.to(hf.dtype)
    diff = _gather_nodes(hf, neighbours) - hf.unsqueeze(-1)  # (B, C, N, M)
    winners = (diff == diff.amax(dim=-1, keepdim=True)).to(hf.dtype)
    share = gf.unsqueeze(-1) * winners / winners.sum(dim=-1, keepdim=True)
    b, c, n = h.shape
    m = neighbours.shape[-1]
    target = neighbours.long().reshape(b, 1, n * m).expand(b, c, n * m)
    return (-gf).scatter_add(2, target, share.reshape(b, c, n * m)).to(h.dtype)


def dense_attention_backward(q: Tensor, v: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of context = v·Sᵀ, S = softmax(qᵀq), w.r.t. q and v (materialises S: training sizes)."""
    qf, vf = _acc(q), _acc(v)
    gf = grad.to(qf.dtype)
    s = torch.softmax(qf.transpose(1, 2) @ qf, dim=-1)
    grad_v = gf @ s
    grad_s = gf.transpose(1, 2) @ vf
    grad_logits = s * (grad_s - (grad_s * s).sum(dim=-1, keepdim=True))
    grad_q = qf @ (grad_logits + grad_logits.transpose(1, 2))
    return grad_q.to(q.dtype), grad_v.to(v.dtype)


def _setup_context(ctx, inputs, output) -> None:
    h, q, v, _, _, _ = inputs
    ctx.save_for_backward(h, q, v, output[2])


def _backward(ctx, grad_max_relative, grad_context, _grad_neighbours):
    h, q, v, neighbours = ctx.saved_tensors
    grad_h = grad_q = grad_v = None
    if grad_max_relative is not None and ctx.needs_input_grad[0]:
        grad_h = max_relative_backward(h, neighbours, grad_max_relative)
    if grad_context is not None and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
        grad_q, grad_v = dense_attention_backward(q, v, grad_context)
    return grad_h, grad_q, grad_v, None, None, None


graph_attention_op.register_autograd(_backward, setup_context=_setup_context)
