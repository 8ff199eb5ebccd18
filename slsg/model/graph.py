"""The self-attentive graph convolution (reference §1.3): dense softmax attention + dilated kNN graph."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slsg.ops.graph_attention import graph_attention_fused


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """MAE's 2-D sin-cos embedding (H·W × dim): half the dims per axis, frequencies 1/10000^(j/(dim/4))."""
    if dim % 4:
        raise ValueError(f"relative-position dim {dim} must be divisible by 4")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    gy, gx = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")

    def axis(pos: np.ndarray) -> np.ndarray:
        out = np.outer(pos.ravel(), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([axis(gx), axis(gy)], axis=1)


def relative_position(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """R = −2·E·Eᵀ/dim (N×N): −1 on the diagonal, rising towards −0.64 with distance at 16×16, dim 512."""
    e = sincos_2d(dim, grid_h, grid_w)
    return torch.from_numpy(-2.0 * e @ e.T / dim).float()


def knn_neighbours(q: torch.Tensor, relpos: torch.Tensor, candidates: int, dilation: int) -> torch.Tensor:
    """Indices B×N×K of each node's neighbours: top-`candidates` of cos + relpos, every `dilation`-th kept.

    Tie rule (shared with `slsg.ops.graph_attention` and the Triton kernel): score descending, then the
    smaller node index — a stable descending sort. Exact ties are common (R has few distinct values), and
    `torch.topk` promises no order among them. The ONNX export keeps TopK (K = candidates, what TensorRT
    takes), whose specification breaks ties to the lower index: the same rule."""
    qn = F.normalize(q, dim=1)
    score = torch.matmul(qn.transpose(1, 2), qn) + relpos
    k = min(candidates, score.shape[-1])
    if torch.onnx.is_in_onnx_export():
        idx = torch.topk(score, k, dim=-1).indices
    else:
        idx = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :k]
    return idx[..., ::dilation]


def max_relative(h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """max over neighbours n of (h[:, :, n] − h[:, :, i]); h B×C×N, idx B×N×K → B×C×N."""
    b, c, n = h.shape
    k = idx.shape[-1]
    gathered = torch.gather(h, 2, idx.reshape(b, 1, n * k).expand(b, c, n * k)).reshape(b, c, n, k)
    return (gathered - h.unsqueeze(-1)).amax(dim=-1)


def dense_context(q: torch.Tensor, v: torch.Tensor, scaled: bool) -> torch.Tensor:
    """softmax_row(qᵀq)·vᵀ in node layout: q B×Cq×N, v B×C×N → B×C×N."""
    logits = torch.matmul(q.transpose(1, 2), q)
    if scaled:
        logits = logits / math.sqrt(q.shape[1])
    attn = torch.softmax(logits, dim=-1)
    return torch.matmul(v, attn.transpose(1, 2))


def conv_bn(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, groups=groups, bias=True), nn.BatchNorm2d(cout))


class Grapher(nn.Module):
    """One Grapher block: fc1 → (dense context + max-relative kNN) → grouped fuse → fc2, with a residual."""

    def __init__(self, channels: int, qk_channels: int, grid: tuple[int, int], candidates: int = 27,
                 dilation: int = 3, relpos_reference_sign: bool = True, value_conv_reference: bool = True,
                 softmax_unscaled: bool = True, kernel: str = "reference") -> None:
        super().__init__()
        self.candidates, self.dilation = candidates, dilation
        self.softmax_unscaled, self.kernel = softmax_unscaled, kernel
        self.fc1 = conv_bn(channels, channels)
        self.qk = conv_bn(channels, qk_channels)  # shared: the reference's f_query is f_key
        kv = 3 if value_conv_reference else 1
        self.value = nn.Conv2d(channels, channels, kv, padding=kv // 2)
        self.out_proj = nn.Conv2d(channels, channels, 1)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, 2 * channels, 1, groups=4), nn.BatchNorm2d(2 * channels),
                                  nn.GELU())
        self.fc2 = conv_bn(2 * channels, channels)
        sign = 1.0 if relpos_reference_sign else -1.0
        self.register_buffer("relative_pos", sign * relative_position(channels, *grid), persistent=False)
        self._init_like_reference()

    def _init_like_reference(self) -> None:
        for conv in (self.value, self.out_proj):
            nn.init.normal_(conv.weight, 0.0, 0.02)
        nn.init.kaiming_normal_(self.fuse[0].weight)
        nn.init.zeros_(self.fuse[0].bias)

    def neighbours(self, h: torch.Tensor) -> torch.Tensor:
        """kNN indices B×N×K for bottleneck features h (B×C×H×W), after fc1."""
        q = self.qk(h).flatten(2)
        return knn_neighbours(q, self.relative_pos, self.candidates, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        n = hh * ww
        if self.relative_pos.shape[-1] != n:
            raise ValueError(f"graph built for {self.relative_pos.shape[-1]} nodes, got a {hh}×{ww} grid")
        h = self.fc1(x)
        q = self.qk(h).flatten(2)  # B×Cq×N
        v = self.value(h.reshape(b, c, n, 1)).reshape(b, c, n)
        hf = h.flatten(2)
        if self.kernel == "fused":
            xj, ctx = graph_attention_fused(hf, q, v, self.relative_pos, min(self.candidates, n), self.dilation)
        else:
            ctx = dense_context(q, v, scaled=not self.softmax_unscaled)
            with torch.no_grad():
                idx = knn_neighbours(q, self.relative_pos, self.candidates, self.dilation)
            xj = max_relative(hf, idx)
        h2 = hf + self.out_proj(ctx.reshape(b, c, hh, ww)).flatten(2)
        # Interleave channels: h2₀, xj₀, h2₁, xj₁, … so group g of the fuse conv sees both halves of its slice.
        inter = torch.stack([h2, xj], dim=2).reshape(b, 2 * c, hh, ww)
        return self.fc2(self.fuse(inter)) + x
