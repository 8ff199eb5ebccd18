"""Triton kernel for the SLSG Grapher: dilated kNN max-relative aggregation and dense softmax context.

One kernel computes both halves of the self-attentive graph convolution (reference §1.3) for a block
of nodes, without ever writing the N×N similarity matrix to global memory:

* **sparse path** — score = cos(q̂ᵢ, q̂ⱼ) + R[i, j]; the 27 best columns per row are kept in registers
  as int64 keys (order-preserving float bits in the high word, the inverted column in the low word),
  so ties go to the smaller column exactly like a stable descending sort; dilation 3 keeps ranks
  0, 3, …, 24 and out[c, i] = max over those neighbours n of (h[c, n] − h[c, i]);
* **dense path** — ctx[c, i] = Σⱼ softmax_j(qᵢ·qⱼ) v[c, j] (unscaled), flash-style online softmax.

Grid: (cdiv(N, BLOCK_M), cdiv(C, BLOCK_D) + 1, B). Programs with axis-1 id < cdiv(C, BLOCK_D) compute
one channel block of the dense context; the last one along axis 1 computes the kNN path. The parameter
order (input pointers, int32 scalars, output pointers, then constexprs) is the calling convention of
TensorRT ahead-of-time plugins, so the TensorRT plugin launches this very kernel.

All tensors are contiguous: h, v, max-relative and context (B, C, N); q (B, CQ, N); R (N, N) shared
by the batch; neighbour indices (B, N, NB) int32. Accumulation is float32 for float32 and float16 inputs.

This module imports Triton only (never torch) so the torch-free runtime can ship it; launching needs
tensors Triton understands (torch tensors in the custom op), which the caller provides.
"""

from __future__ import annotations

import triton
import triton.language as tl

from edge_runtime.kernels.tiles import TileConfig  # callers use kernels.TileConfig

DEFAULT_K = 27
DEFAULT_DILATION = 3
NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's default

_MIN_KEY = tl.constexpr(-(2**63))
_MAX_KEY = tl.constexpr(2**63 - 1)


def neighbour_count(k: int, dilation: int) -> int:
    """Neighbours kept after dilation: ranks 0, d, 2d, … below k."""
    return len(range(0, k, dilation))


def check_problem(n_nodes: int, k: int, dilation: int) -> None:
    """Reject launches whose top-k is undefined instead of returning garbage neighbours."""
    if k < 1 or dilation < 1:
        raise ValueError(f"k and dilation must be >= 1, got k={k}, dilation={dilation}")
    if n_nodes < k:
        raise ValueError(f"graph attention needs at least k={k} nodes, got N={n_nodes}; use a larger input")


def _pow2(x: int) -> int:
    return max(16, triton.next_power_of_2(x))


def constexprs(k: int, dilation: int, tiles: TileConfig) -> dict[str, int | float]:
    """Compile-time constants of the kernel (shared by the JIT launch and the TensorRT AOT compile)."""
    return {
        "K": k,
        "DIL": dilation,
        "NB": neighbour_count(k, dilation),
        "KPAD": _pow2(k),
        "NBPAD": _pow2(neighbour_count(k, dilation)),
        "BLOCK_M": tiles.block_m,
        "BLOCK_N": tiles.block_n,
        "BLOCK_C": tiles.block_c,
        "BLOCK_D": tiles.block_d,
        "EPS": NORMALIZE_EPS,
    }


def grid(batch: int, channels: int, n_nodes: int, tiles: TileConfig) -> tuple[int, int, int]:
    """Launch grid: row blocks × (dense channel blocks + one kNN program) × batch."""
    return (triton.cdiv(n_nodes, tiles.block_m), triton.cdiv(channels, tiles.block_d) + 1, batch)


def aot_signature(dtype: str) -> dict[str, str]:
    """Triton signature for ahead-of-time compilation; dtype is "fp32" or "fp16"."""
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"graph attention kernels support fp32 and fp16, got {dtype!r}")
    sig = {name: f"*{dtype}" for name in ("h_ptr", "q_ptr", "v_ptr", "rel_ptr")}
    sig.update({"C": "i32", "CQ": "i32", "N": "i32"})
    sig.update({"mr_ptr": f"*{dtype}", "ctx_ptr": f"*{dtype}", "idx_ptr": "*i32"})
    sig.update({name: "constexpr" for name in constexprs(DEFAULT_K, DEFAULT_DILATION, TileConfig())})
    return sig


def launch(h, q, v, rel, mr_out, ctx_out, idx_out, k: int = DEFAULT_K, dilation: int = DEFAULT_DILATION,
           tiles: TileConfig = TileConfig()) -> None:
    """Launch the fused kernel on contiguous tensors already allocated by the caller (see module doc)."""
    batch, channels, n_nodes = h.shape
    check_problem(n_nodes, k, dilation)
    graph_attention_kernel[grid(batch, channels, n_nodes, tiles)](
        h, q, v, rel, channels, q.shape[1], n_nodes, mr_out, ctx_out, idx_out,
        num_warps=tiles.num_warps, **constexprs(k, dilation, tiles),
    )


@triton.jit
def _score_keys(score, cols):
    """Unique int64 keys whose descending order is (score desc, column asc), i.e. a stable sort."""
    score = tl.where(score == 0.0, 0.0, score)  # −0.0 and +0.0 tie, as in torch.sort
    bits = score.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    low = -(cols.to(tl.int64) - 4294967296) - 1  # 2**32 − 1 − col: smaller column ranks higher
    return (ordered.to(tl.int64) << 32) | low


@triton.jit
def _key_column(key):
    low = key - ((key >> 32) << 32)
    return (-(low - 4294967296) - 1).to(tl.int32)


@triton.jit
def _row_inv_norms(q_base, rows, row_mask, CQ, N, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                   EPS: tl.constexpr):
    sq = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for c0 in range(0, CQ, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        a = tl.load(q_base + cs[:, None] * N + rows[None, :],
                    mask=(cs < CQ)[:, None] & row_mask[None, :], other=0.0).to(tl.float32)
        sq += tl.sum(a * a, axis=0)
    return 1.0 / tl.maximum(tl.sqrt(sq), EPS)


@triton.jit
def _knn_max_relative(h_base, q_base, rel_ptr, mr_base, idx_base, C, CQ, N, row_start,
                      K: tl.constexpr, DIL: tl.constexpr, NB: tl.constexpr, KPAD: tl.constexpr,
                      NBPAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_C: tl.constexpr, EPS: tl.constexpr):
    rows = row_start + tl.arange(0, BLOCK_M)
    row_mask = rows < N
    inv_rows = _row_inv_norms(q_base, rows, row_mask, CQ, N, BLOCK_M, BLOCK_C, EPS)

    # Running top-K per row as unique keys; slots ≥ K hold MAX so they are never the minimum.
    slots = tl.arange(0, KPAD).to(tl.int64)
    initial = tl.where(slots < K, slots + (_MIN_KEY + 1), _MAX_KEY)
    top = tl.zeros((BLOCK_M, KPAD), dtype=tl.int64) + initial[None, :]

    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_mask = cols < N
        dots = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        col_sq = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for c0 in range(0, CQ, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            c_mask = cs < CQ
            a = tl.load(q_base + cs[:, None] * N + rows[None, :], mask=c_mask[:, None] & row_mask[None, :],
                        other=0.0)
            b = tl.load(q_base + cs[:, None] * N + cols[None, :], mask=c_mask[:, None] & col_mask[None, :],
                        other=0.0)
            dots = tl.dot(tl.trans(a), b, dots, input_precision="ieee")
            bf = b.to(tl.float32)
            col_sq += tl.sum(bf * bf, axis=0)
        inv_cols = 1.0 / tl.maximum(tl.sqrt(col_sq), EPS)
        rel = tl.load(rel_ptr + rows[:, None] * N + cols[None, :], mask=row_mask[:, None] & col_mask[None, :],
                      other=0.0).to(tl.float32)
        score = dots * inv_rows[:, None] * inv_cols[None, :] + rel
        keys = tl.where(col_mask[None, :], _score_keys(score, cols[None, :]), _MIN_KEY)

        # Streaming top-K: feed tile keys in descending order, each replacing the row minimum if larger.
        # Only as many rounds as the busiest row has keys above its current K-th best (at most K).
        above = tl.sum((keys > tl.min(top, axis=1)[:, None]).to(tl.int32), axis=1)
        rounds = tl.minimum(tl.max(above, axis=0), K)
        for _ in range(0, rounds):
            best = tl.max(keys, axis=1)
            worst = tl.min(top, axis=1)
            take = best > worst
            top = tl.where((top == worst[:, None]) & take[:, None], best[:, None], top)
            keys = tl.where(keys == best[:, None], _MIN_KEY, keys)

    # Ranks 0, DIL, 2·DIL, … of the sorted top-K become the neighbours.
    top = tl.where(top == _MAX_KEY, _MIN_KEY, top)
    nslots = tl.arange(0, NBPAD)
    nbrs = tl.zeros((BLOCK_M, NBPAD), dtype=tl.int32)
    for t in tl.static_range(NB):
        for r in tl.static_range(DIL):
            best = tl.max(top, axis=1)
            if r == 0:
                nbrs = tl.where(nslots[None, :] == t, _key_column(best)[:, None], nbrs)
            top = tl.where(top == best[:, None], _MIN_KEY, top)
    tl.store(idx_base + rows[:, None] * NB + nslots[None, :], nbrs,
             mask=row_mask[:, None] & (nslots < NB)[None, :])

    # Max-relative aggregation: max over neighbours of h[:, n] − h[:, i].
    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        mask = (cs < C)[:, None] & row_mask[None, :]
        centre = tl.load(h_base + cs[:, None] * N + rows[None, :], mask=mask, other=0.0).to(tl.float32)
        out = tl.full((BLOCK_C, BLOCK_M), float("-inf"), dtype=tl.float32)
        for t in tl.static_range(NB):
            nbr = tl.sum(tl.where(nslots[None, :] == t, nbrs, 0), axis=1)
            other = tl.load(h_base + cs[:, None] * N + nbr[None, :], mask=mask, other=0.0).to(tl.float32)
            out = tl.maximum(out, other - centre)
        tl.store(mr_base + cs[:, None] * N + rows[None, :], out.to(mr_base.dtype.element_ty), mask=mask)


@triton.jit
def _dense_context(q_base, v_base, ctx_base, C, CQ, N, row_start, d_start,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_D: tl.constexpr):
    rows = row_start + tl.arange(0, BLOCK_M)
    row_mask = rows < N
    ds = d_start + tl.arange(0, BLOCK_D)
    d_mask = ds < C
    run_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_mask = cols < N
        logits = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for c0 in range(0, CQ, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            c_mask = cs < CQ
            a = tl.load(q_base + cs[:, None] * N + rows[None, :], mask=c_mask[:, None] & row_mask[None, :],
                        other=0.0)
            b = tl.load(q_base + cs[:, None] * N + cols[None, :], mask=c_mask[:, None] & col_mask[None, :],
                        other=0.0)
            logits = tl.dot(tl.trans(a), b, logits, input_precision="ieee")
        logits = tl.where(col_mask[None, :], logits, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(logits, axis=1))
        scale = tl.exp(run_max - new_max)
        p = tl.exp(logits - new_max[:, None])
        run_sum = run_sum * scale + tl.sum(p, axis=1)
        vt = tl.load(v_base + ds[None, :] * N + cols[:, None], mask=col_mask[:, None] & d_mask[None, :],
                     other=0.0)
        acc = tl.dot(p.to(vt.dtype), vt, acc * scale[:, None], input_precision="ieee")
        run_max = new_max
    out = acc / run_sum[:, None]
    tl.store(ctx_base + ds[None, :] * N + rows[:, None], out.to(ctx_base.dtype.element_ty),
             mask=row_mask[:, None] & d_mask[None, :])


@triton.jit
def graph_attention_kernel(h_ptr, q_ptr, v_ptr, rel_ptr, C, CQ, N, mr_ptr, ctx_ptr, idx_ptr,
                           K: tl.constexpr, DIL: tl.constexpr, NB: tl.constexpr, KPAD: tl.constexpr,
                           NBPAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, EPS: tl.constexpr):
    row_start = tl.program_id(0) * BLOCK_M
    part = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    q_base = q_ptr + b * CQ * N
    if part < (C + BLOCK_D - 1) // BLOCK_D:
        _dense_context(q_base, v_ptr + b * C * N, ctx_ptr + b * C * N, C, CQ, N, row_start,
                       part * BLOCK_D, BLOCK_M, BLOCK_N, BLOCK_C, BLOCK_D)
    else:
        _knn_max_relative(h_ptr + b * C * N, q_base, rel_ptr, mr_ptr + b * C * N, idx_ptr + b * N * NB,
                          C, CQ, N, row_start, K, DIL, NB, KPAD, NBPAD, BLOCK_M, BLOCK_N, BLOCK_C, EPS)
