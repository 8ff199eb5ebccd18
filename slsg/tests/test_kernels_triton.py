"""The fused Triton kernel agrees with the pure-torch reference (run on the CPU by Triton's interpreter).

The kernels run in a child process started with TRITON_INTERPRET=1 (this file run as a script): the
interpreter must be chosen before Triton is first imported, which the parent process cannot promise
once other tests have imported it. The child writes its outputs to a safetensors file; the
comparisons against the reference happen here.
"""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from slsg.model.graph import knn_neighbours, relative_position
from slsg.ops.graph_attention import (
    dense_attention_context_reference,
    knn_neighbours_reference,
    max_relative_reference,
    run_triton,
)

NEAR_TIE = 1e-5  # score gaps below this are decided by rounding, not by the data


def _inputs(batch: int, n: int, c: int, cq: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, c, n, generator=g).to(dtype)
    q = torch.randn(batch, cq, n, generator=g).to(dtype)
    v = torch.randn(batch, c, n, generator=g).to(dtype)
    rel = torch.rand(n, n, generator=g) * -0.36 - 0.64  # the reference's R range [-1, -0.64]
    return h, q, v, rel


def _assert_same_neighbours(got: torch.Tensor, q: torch.Tensor, rel: torch.Tensor) -> None:
    """Identical neighbour lists, except rows whose ranking hinges on a float64 score gap < NEAR_TIE."""
    want = knn_neighbours_reference(q, rel)
    differ = (got != want).any(dim=-1)
    if differ.any():
        qn = torch.nn.functional.normalize(q.double(), dim=1)
        top = (qn.transpose(1, 2) @ qn + rel.double()).sort(dim=-1, descending=True).values[..., :28]
        gaps = (top[..., :-1] - top[..., 1:]).min(dim=-1).values
        assert bool((gaps[differ] < NEAR_TIE).all()), "neighbours differ where the scores are well separated"
        assert differ.float().mean() < 0.02, f"{int(differ.sum())} rows differ"


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).abs().max() / want.float().abs().max())


_FAST = dict(block_m=64, block_n=128, block_c=16, block_d=16)  # fewer interpreter steps
CASES = {  # name: batch, N, C, CQ, dtype, tiles (None = the GPU default)
    "fp32_n64": (2, 64, 8, 16, torch.float32, None),
    "fp32_n100": (1, 100, 24, 40, torch.float32, None),  # N, C, CQ off the block grid: every mask
    "fp32_n256": (1, 256, 16, 8, torch.float32, _FAST),
    "fp32_n1024": (1, 1024, 4, 8, torch.float32, dict(block_m=128, block_n=256, block_c=16, block_d=16)),
    "fp16_n64": (1, 64, 16, 16, torch.float16, _FAST),
    "fp16_n256": (1, 256, 16, 16, torch.float16, _FAST),
}


def _case_inputs(name: str):
    batch, n, c, cq, dtype, _ = CASES[name]
    return _inputs(batch, n, c, cq, seed=n + c, dtype=dtype)


def _tie_inputs():
    """One-hot q columns scaled by powers of two: cosines are exactly 0 or 1 and R exactly 0 or −0.25,
    so every row has many bit-identical scores whatever the summation order."""
    n, cq = 64, 4
    q = torch.zeros(1, cq, n)
    for j in range(n):
        q[0, j % cq, j] = 2.0 ** (j % 3)
    rel = torch.zeros(n, n)
    rel[:, 40:48] = -0.25
    h = torch.randn(1, 3, n, generator=torch.Generator().manual_seed(0))
    return h, q, h.clone(), rel


def _run_all_kernels() -> dict:
    """Child process only: every case through the Triton kernel."""
    from edge_runtime.kernels import graph_attention_triton as kernels

    outputs = {}
    for name, (*_, tiles) in CASES.items():
        config = kernels.TileConfig(**tiles) if tiles else kernels.TileConfig()
        for key, value in zip(("mr", "ctx", "idx"), run_triton(*_case_inputs(name), tiles=config)):
            outputs[f"{name}.{key}"] = value
    outputs["ties.idx"] = run_triton(*_tie_inputs())[2]
    outputs["relpos_ties.idx"] = run_triton(*_relpos_tie_inputs())[2]
    return outputs


@pytest.fixture(scope="module")
def kernel_outputs(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("kernels") / "outputs.safetensors"
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, __file__, str(path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"kernel child process failed:\n{proc.stderr[-4000:]}"
    return load_file(str(path))


@pytest.mark.parametrize("name", [name for name in CASES if name.startswith("fp32")])
def test_fp32_kernel_matches_reference(kernel_outputs, name):
    h, q, v, rel = _case_inputs(name)
    mr, ctx, idx = (kernel_outputs[f"{name}.{key}"] for key in ("mr", "ctx", "idx"))
    _assert_same_neighbours(idx, q, rel)
    assert torch.equal(mr, max_relative_reference(h, idx))
    assert _relative_error(ctx, dense_attention_context_reference(q, v)) <= 1e-5


@pytest.mark.parametrize("name", [name for name in CASES if name.startswith("fp16")])
def test_fp16_kernel_matches_reference(kernel_outputs, name):
    h, q, v, rel = _case_inputs(name)
    mr, ctx, idx = (kernel_outputs[f"{name}.{key}"] for key in ("mr", "ctx", "idx"))
    assert mr.dtype == ctx.dtype == torch.float16
    _assert_same_neighbours(idx, q, rel)
    assert _relative_error(mr, max_relative_reference(h, idx)) <= 1e-2
    assert _relative_error(ctx, dense_attention_context_reference(q, v)) <= 1e-2


def _relpos_tie_inputs():
    """Constant q with the model's real relative-position table (8×8 grid): cos = 1 everywhere, so the
    neighbours are decided by R alone, and R is full of exact ties."""

    n = 64
    q = torch.ones(1, 4, n)
    h = torch.randn(1, 3, n, generator=torch.Generator().manual_seed(1))
    return h, q, h.clone(), relative_position(16, 8, 8)


def _expected_by_tie_rule(score: list[list[float]], k: int = 27, dilation: int = 3) -> list[list[int]]:
    """Plain-Python ranking: score descending, then column ascending."""
    return [sorted(range(len(row)), key=lambda j: (-row[j], j))[:k:dilation] for row in score]


def test_exact_ties_go_to_the_smaller_index(kernel_outputs):
    _, q, _, rel = _tie_inputs()
    n, cq = q.shape[2], q.shape[1]
    score = ((torch.arange(n)[:, None] % cq == torch.arange(n)[None, :] % cq).float() + rel).tolist()
    expected = torch.tensor(_expected_by_tie_rule(score), dtype=torch.int32)[None]
    assert torch.equal(knn_neighbours_reference(q, rel), expected)
    assert torch.equal(kernel_outputs["ties.idx"], expected)


def test_kernel_and_reference_layer_agree_on_the_real_relative_position_ties(kernel_outputs):
    _, q, _, rel = _relpos_tie_inputs()
    expected = torch.tensor(_expected_by_tie_rule((1.0 + rel).tolist()), dtype=torch.int32)[None]
    assert torch.equal(kernel_outputs["relpos_ties.idx"], expected)
    assert torch.equal(knn_neighbours(q, rel, 27, 3).int(), expected)


if __name__ == "__main__":
    save_file({k: v.contiguous() for k, v in _run_all_kernels().items()}, sys.argv[1])
