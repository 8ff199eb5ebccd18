"""The `slsg::graph_attention` custom op: CPU reference path, fake shapes, export, compile, gradients."""

import pytest
import torch

from slsg.ops.graph_attention import (
    graph_attention_fused,
    graph_attention_op,
    graph_attention_reference,
    knn_neighbours_reference,
)

N, C, CQ = 36, 6, 4


def _inputs(dtype=torch.float32, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, C, N, generator=g, dtype=dtype)
    q = torch.randn(batch, CQ, N, generator=g, dtype=dtype)
    v = torch.randn(batch, C, N, generator=g, dtype=dtype)
    rel = -torch.rand(N, N, generator=g, dtype=dtype)
    return h, q, v, rel


class Block(torch.nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fn = graph_attention_fused if fused else graph_attention_reference
        self.register_buffer("rel", -torch.rand(1, N, N, generator=torch.Generator().manual_seed(3)))

    def forward(self, h, q, v):
        max_relative, context = self.fn(h, q, v, self.rel)
        return max_relative + 2 * context


def test_fused_and_reference_agree_on_cpu_in_every_layout():
    h, q, v, rel = _inputs()
    want = graph_attention_reference(h, q, v, rel)
    got = graph_attention_fused(h.unsqueeze(-1), q.unsqueeze(-1), v.unsqueeze(-1), rel[None])
    for a, b in zip(got, want):
        assert a.shape == (2, C, N)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_op_returns_the_dilated_neighbours():
    h, q, v, rel = _inputs()
    _, _, idx = graph_attention_op(h, q, v, rel, 27, 3)
    assert idx.dtype == torch.int32 and idx.shape == (2, N, 9)
    assert torch.equal(idx, knn_neighbours_reference(q, rel, 27, 3))


def test_bad_inputs_are_refused_with_a_reason():
    h, q, v, rel = _inputs()
    with pytest.raises(ValueError, match="rel_pos must be"):
        graph_attention_fused(h, q, v, rel[:-1, :-1])
    with pytest.raises(ValueError, match="at least|k <= N"):
        graph_attention_fused(h[..., :20], q[..., :20], v[..., :20], rel[:20, :20])
    with pytest.raises(TypeError, match="share one dtype"):
        graph_attention_fused(h, q.half(), v, rel)


def test_opcheck_schema_fake_and_autograd_registration():
    h, q, v, rel = _inputs()
    torch.library.opcheck(graph_attention_op, (h.requires_grad_(), q, v, rel, 27, 3),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_torch_export_keeps_the_op_and_matches_eager():
    h, q, v, _ = _inputs()
    block = Block(fused=True)
    exported = torch.export.export(block, (h, q, v))
    targets = {node.target for node in exported.graph.nodes if node.op == "call_function"}
    assert torch.ops.slsg.graph_attention.default in targets
    torch.testing.assert_close(exported.module()(h, q, v), Block(fused=False)(h, q, v), rtol=0, atol=0)


def test_torch_compile_fullgraph_forward_and_backward():
    h, q, v, _ = _inputs()
    block = Block(fused=True)
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    inputs = [t.clone().requires_grad_() for t in (h, q, v)]
    compiled(*inputs).square().sum().backward()
    expected = [t.clone().requires_grad_() for t in (h, q, v)]
    Block(fused=False)(*expected).square().sum().backward()
    for got, want in zip(inputs, expected):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-4)


def test_gradcheck_of_the_op_backward():
    h, q, v, rel = _inputs(torch.float64, batch=1, seed=5)
    h, q, v = (t.requires_grad_() for t in (h, q, v))

    def outputs(h, q, v):
        max_relative, context, _ = graph_attention_op(h, q, v, rel, 27, 3)
        return max_relative, context

    assert torch.autograd.gradcheck(outputs, (h, q, v), eps=1e-6, atol=1e-5)


def test_op_backward_matches_reference_autograd_in_float32():
    h, q, v, rel = _inputs(seed=9)
    weights = torch.randn(2, 2, C, N, generator=torch.Generator().manual_seed(1))
    grads = []
    for fn in (graph_attention_fused, graph_attention_reference):
        leaves = [t.clone().requires_grad_() for t in (h, q, v)]
        max_relative, context = fn(*leaves, rel)
        ((max_relative * weights[0]).sum() + (context * weights[1]).sum()).backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
