"""One tie rule for the kNN graph, shared by the reference layer (`slsg.model.graph`), the custom op
(`slsg.ops.graph_attention`, forward and backward) and the Triton kernel: score descending, then the smaller
node index; where neighbours tie for the max-relative, the gradient is split evenly among them. With the
real relative-position table exact ties are the rule, not the exception, so a model trained through one path
must run — and train — the same through the other."""

from __future__ import annotations

import torch

from slsg.model.graph import Grapher, knn_neighbours, max_relative, relative_position
from slsg.ops.graph_attention import knn_neighbours_reference, max_relative_backward


def _by_rule(score: torch.Tensor, k: int, dilation: int) -> torch.Tensor:
    """Plain Python: sort each row by (score descending, column ascending)."""
    rows = [sorted(range(len(r)), key=lambda j: (-r[j], j))[:k:dilation] for r in score.tolist()]
    return torch.tensor(rows)


def test_the_real_relative_position_table_is_full_of_exact_ties():
    rel = relative_position(512, 16, 16)
    assert rel.unique().numel() < 200 < rel.numel()


def test_reference_layer_and_op_pick_neighbours_by_the_tie_rule():
    rel = relative_position(512, 16, 16)
    q = torch.ones(1, 8, 256)                     # constant q: cos = 1 everywhere, the order is R's alone
    score = torch.nn.functional.normalize(q, dim=1)[0].T @ torch.nn.functional.normalize(q, dim=1)[0] + rel
    want = _by_rule(score, 27, 3)[None]
    assert torch.equal(knn_neighbours(q, rel, 27, 3), want)
    assert torch.equal(knn_neighbours_reference(q, rel, 27, 3).long(), want)


def test_max_relative_backward_splits_ties_like_the_reference_layer():
    g = torch.Generator().manual_seed(0)
    h = torch.randint(0, 3, (2, 4, 36), generator=g).float()       # few values: many tied maxima
    idx = torch.stack([torch.randperm(36, generator=g)[:9] for _ in range(2 * 36)]).reshape(2, 36, 9)
    grad = torch.randn(2, 4, 36, generator=g)
    leaf = h.clone().requires_grad_()
    (max_relative(leaf, idx) * grad).sum().backward()
    torch.testing.assert_close(max_relative_backward(h, idx.int(), grad), leaf.grad, rtol=0, atol=1e-6)


def _tied_grapher(kernel: str) -> Grapher:
    torch.manual_seed(0)
    block = Grapher(16, 8, (6, 6), kernel=kernel).eval()
    with torch.no_grad():
        block.qk[0].weight.zero_()                 # q constant: neighbour choice decided by ties only
        block.qk[0].bias.fill_(1.0)
    return block


def test_a_grapher_trained_on_either_path_runs_and_trains_the_same_through_the_other():
    x = torch.randint(0, 3, (2, 16, 6, 6)).float()         # tied features: tied max-relative winners too
    outs, grads = [], []
    for kernel in ("reference", "fused"):
        block = _tied_grapher(kernel)
        xi = x.clone().requires_grad_()
        out = block(xi)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad for p in block.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
