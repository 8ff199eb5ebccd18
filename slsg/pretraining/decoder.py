"""The pretext network: the SLSG encoder trunk plus a light inpainting decoder and a position head.

Only the trunk is kept afterwards; the decoder and head are deliberately small so the encoder, not them,
has to carry the knowledge of what normal parts look like and where they belong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slsg.model.backbones import build_trunk


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InpaintingDecoder(nn.Module):
    """Top-down from the stride-16 map with the stride-8 and stride-4 features added; RGB in [0, 1] out."""

    def __init__(self, channels: tuple[int, ...], width: int) -> None:
        super().__init__()
        _, _, c2, c3, c4 = channels
        self.lateral4 = nn.Conv2d(c4, width, 1)
        self.lateral3 = nn.Conv2d(c3, width, 1)
        self.lateral2 = nn.Conv2d(c2, width, 1)
        self.fuse3 = _conv_bn_relu(width, width)
        self.fuse2 = _conv_bn_relu(width, width)
        self.up1 = _conv_bn_relu(width, width // 2)
        self.to_rgb = nn.Conv2d(width // 2, 3, 3, padding=1)

    def forward(self, f2: torch.Tensor, f3: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        y = self.lateral4(f4)
        y = self.fuse3(F.interpolate(y, size=f3.shape[-2:], mode="bilinear", align_corners=False) + self.lateral3(f3))
        y = self.fuse2(F.interpolate(y, size=f2.shape[-2:], mode="bilinear", align_corners=False) + self.lateral2(f2))
        y = self.up1(F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False))
        y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.to_rgb(y))


class PositionHead(nn.Module):
    """Per cell of the grid: logits over the G² cells its content came from."""

    def __init__(self, c4: int, grid: int, hidden: int = 128) -> None:
        super().__init__()
        self.grid = grid
        self.net = nn.Sequential(nn.Conv2d(c4, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
                                 nn.ReLU(inplace=True), nn.Conv2d(hidden, grid * grid, 1))

    def forward(self, f4: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(f4, self.grid)
        logits = self.net(pooled)  # N×G²(classes)×G×G
        return logits.flatten(2).transpose(1, 2)  # N×G²(cells)×G²(classes)


class PretextNet(nn.Module):
    """forward(normalised inputs) → (reconstruction RGB [0, 1] N×3×H×W, position logits N×G²×G²)."""

    def __init__(self, backbone: str, grid: int, decoder_width: int) -> None:
        super().__init__()
        self.encoder = build_trunk(backbone)
        self.decoder = InpaintingDecoder(self.encoder.channels, decoder_width)
        self.position = PositionHead(self.encoder.channels[-1], grid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        return self.decoder(feats.f2, feats.f3, feats.f4), self.position(feats.f4)
