"""Spatial-attention skips, the auxiliary head and the U-Net decoder (reference §1.2, §1.4, §1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def up(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SpatialAttention(nn.Module):
    """x + proj(ReLU(x ⊙ A(x))), A = dw3×3 → dw3×3 dilation 3 → 1×1 (VAN's LKA with small kernels)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 3, padding=3, dilation=3, groups=dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.conv1(self.conv_spatial(self.conv0(x)))
        return x + self.proj(F.relu(x * attn))


class AuxHead(nn.Module):
    """2-class logits at the bottleneck, upsampled ×16; its hidden map is also fed to the decoder."""

    def __init__(self, cin: int, hidden: int, aux: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, hidden), conv_bn_relu(hidden, aux))
        self.out = nn.Sequential(conv_bn_relu(aux, aux), nn.Conv2d(aux, 2, 3, padding=1))

    def forward(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a0 = self.body(g)
        return a0, up(self.out(a0), 16)


class Decoder(nn.Module):
    """U-Net decoder; widths (w3, w2, w1) follow the backbone (ResNet-18: 256, 128, 64)."""

    def __init__(self, channels: tuple[int, int, int, int, int], widths: tuple[int, int, int], aux: int) -> None:
        super().__init__()
        c_stem, c1, c2, c3, c4 = channels
        w3, w2, w1 = widths
        self.up1 = conv_bn_relu(c4, w3)
        self.db1 = nn.Sequential(conv_bn_relu(w3 + c3, w3), conv_bn_relu(w3, w3))
        self.up2 = conv_bn_relu(w3, w2)
        self.db2 = nn.Sequential(conv_bn_relu(w2 + c2 + aux, w2), conv_bn_relu(w2, w2))
        self.up3 = conv_bn_relu(w2, w1)
        self.db3 = nn.Sequential(conv_bn_relu(w1 + c1 + aux, w1), conv_bn_relu(w1, w1))
        self.up4 = conv_bn_relu(w1, w1 // 2)
        self.db4 = conv_bn_relu(w1 // 2 + c_stem, w1)
        self.final = nn.Sequential(conv_bn_relu(w1, w1 // 2), conv_bn_relu(w1 // 2, w1 // 4),
                                   nn.Conv2d(w1 // 4, 2, 3, padding=1))

    def forward(self, g: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, stem: torch.Tensor,
                a0: torch.Tensor) -> torch.Tensor:
        x = self.db1(torch.cat([self.up1(up(g)), s3], 1))
        a64 = up(up(a0))
        x = self.db2(torch.cat([self.up2(up(x)), s2, a64], 1))
        x = self.db3(torch.cat([self.up3(up(x)), s1, up(a64)], 1))
        x = self.db4(torch.cat([self.up4(x), stem], 1))
        return self.final(up(x))
