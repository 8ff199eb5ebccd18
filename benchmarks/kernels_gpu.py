"""GPU check of the fused graph-attention kernel: correctness against the reference, then timings.

    python -m benchmarks.kernels_gpu [--repeats 50]

Prints one table row per case: neighbour rows that differ (and whether every difference is a float
near-tie), max relative errors, and median latency (CUDA events) of the fused kernel against two references:
PyTorch eager, and the same reference compiled by torch.compile(mode="reduce-overhead") — Inductor's kernels
replayed as a CUDA graph, the strongest PyTorch baseline (no Python launch overhead). If
`slsg.model.build_model` exists, the whole network is timed with graph_kernel="reference" and "fused".
Exits 2 with a message where no CUDA device is present.
"""

import argparse
import statistics
import sys

import torch

from slsg.model import ModelConfig, build_model
from slsg.ops.graph_attention import (
    graph_attention_fused,
    graph_attention_op,
    graph_attention_reference,
    knn_neighbours_reference,
    max_relative_reference,
)

CASES = [  # label, batch, N, C, CQ
    ("B1 N256 C512", 1, 256, 512, 256),
    ("B8 N256 C512", 8, 256, 512, 256),
    ("B1 N1024 C512", 1, 1024, 512, 256),
]
NEAR_TIE = 1e-5
#: Calls before timing: torch.compile compiles on the first and records its CUDA graph on a later one.
WARMUP = 5


def _time_ms(fn, repeats: int) -> float:
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _neighbour_check(idx, q, rel) -> tuple[int, bool]:
    """(rows whose neighbours differ from the reference, whether all of them are float near-ties)."""


    differ = (idx != knn_neighbours_reference(q, rel)).any(dim=-1)
    if not differ.any():
        return 0, True
    qn = torch.nn.functional.normalize(q.double(), dim=1)
    top = (qn.transpose(1, 2) @ qn + rel.double()).sort(dim=-1, descending=True).values[..., :28]
    gaps = (top[..., :-1] - top[..., 1:]).min(dim=-1).values
    return int(differ.sum()), bool((gaps[differ] < NEAR_TIE).all())


def _rel_err(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def compiled_reference():
    """The reference through torch.compile(mode="reduce-overhead"): CUDA-graph trees replay it. Each call marks a
    new step, so a replay may reuse the memory of the outputs of the call before (the timing keeps none)."""


    compiled = torch.compile(graph_attention_reference, mode="reduce-overhead", dynamic=False)

    def run(h, q, v, rel):
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(h, q, v, rel)

    return run


def graph_block_rows(repeats: int) -> list[str]:


    rows = []
    compiled = compiled_reference()
    for dtype in (torch.float32, torch.float16):
        for label, batch, n, c, cq in CASES:
            g = torch.Generator(device="cuda").manual_seed(0)
            h, v = (torch.randn(batch, c, n, device="cuda", generator=g, dtype=dtype) for _ in range(2))
            q = torch.randn(batch, cq, n, device="cuda", generator=g, dtype=dtype)
            rel = torch.rand(n, n, device="cuda", generator=g) * -0.36 - 0.64
            with torch.no_grad():
                mr, ctx, idx = graph_attention_op(h, q, v, rel, 27, 3)
                ref_mr, ref_ctx = graph_attention_reference(h, q, v, rel)
                differ, ties_only = _neighbour_check(idx, q, rel)
                t_fused = _time_ms(lambda h=h, q=q, v=v, rel=rel: graph_attention_fused(h, q, v, rel), repeats)
                t_ref = _time_ms(lambda h=h, q=q, v=v, rel=rel: graph_attention_reference(h, q, v, rel), repeats)
                t_graph = _time_ms(lambda h=h, q=q, v=v, rel=rel: compiled(h, q, v, rel), repeats)
            mr_err = _rel_err(mr, max_relative_reference(h, idx))
            rows.append(f"| {label} {str(dtype)[6:]} | {differ} ({'near-ties' if ties_only else 'REAL'}) | "
                        f"{mr_err:.1e} / {_rel_err(ctx, ref_ctx):.1e} | {t_fused:.3f} | {t_ref:.3f} | "
                        f"{t_graph:.3f} | {t_ref / t_fused:.2f}x | {t_graph / t_fused:.2f}x |")
    return rows


def model_rows(repeats: int) -> list[str]:
    rows = []
    x = torch.randn(1, 3, 256, 256, device="cuda")
    for kernel in ("reference", "fused"):
        try:
            model = build_model(ModelConfig(graph_kernel=kernel)).cuda().eval()
        except Exception as exc:  # e.g. no backbone weights on this machine: say so, keep the table
            rows.append(f"| whole model graph_kernel={kernel} | not built: {exc} |")
            continue
        with torch.no_grad():
            ms = _time_ms(lambda model=model: model(x), repeats)
        rows.append(f"| whole model B1 256² graph_kernel={kernel} | {ms:.3f} ms |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("kernels_gpu: no CUDA device here; run this on a machine with an NVIDIA GPU, torch and triton.")
        return 2
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print("| case | neighbour rows differing | rel err max-rel / context | fused ms | eager reference ms | "
          "compiled + CUDA-graph reference ms | speed-up vs eager | vs compiled |")
    print("|---|---|---|---|---|---|---|---|")
    for row in graph_block_rows(args.repeats):
        print(row)
    for row in model_rows(args.repeats):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
