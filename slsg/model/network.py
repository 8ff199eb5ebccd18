"""SLSGNet: frozen encoder → attention skips + graph bottleneck → aux head + U-Net decoder."""

from __future__ import annotations

import torch
from torch import nn

from slsg.model.backbones import build_trunk
from slsg.model.config import ModelConfig
from slsg.model.graph import Grapher
from slsg.model.heads import AuxHead, Decoder, SpatialAttention

DEFAULT_DECODER_WIDTHS = {"resnet18": (256, 128, 64), "efficientnet_lite0": (96, 48, 32)}


class SLSGNet(nn.Module):
    """forward(x normalised RGB N×3×H×W) → (logits, aux_logits), both N×2×H×W; output = decoder + aux."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_trunk(cfg.backbone)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        c_stem, c1, c2, c3, c4 = self.encoder.channels
        self.skips = nn.ModuleList([SpatialAttention(c) for c in (c1, c2, c3)])
        grid = (cfg.size // 16, cfg.size // 16)
        self.graph = Grapher(c4, cfg.qk_channels or c4 // 2, grid, cfg.knn_candidates, cfg.dilation,
                             cfg.relpos_reference_sign, cfg.value_conv_reference, cfg.softmax_unscaled,
                             cfg.graph_kernel)
        self.aux = AuxHead(c4, c4 // 2, cfg.aux_channels)
        widths = cfg.decoder_widths or DEFAULT_DECODER_WIDTHS[cfg.backbone]
        self.decoder = Decoder(self.encoder.channels, widths, cfg.aux_channels)

    def train(self, mode: bool = True) -> SLSGNet:
        super().train(mode)
        if self.cfg.encoder_bn == "eval":
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"SLSG expects N×3×H×W images, got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.cfg.size, self.cfg.size):
            raise ValueError(f"this model was built for {self.cfg.size}×{self.cfg.size} inputs, "
                             f"got {x.shape[-2]}×{x.shape[-1]}: resize with edge_runtime.preprocess.prepare")
        with torch.no_grad():
            feats = self.encoder(x)
        s1, s2, s3 = (skip(f) for skip, f in zip(self.skips, (feats.f1, feats.f2, feats.f3)))
        g = self.graph(feats.f4)
        a0, aux_logits = self.aux(g)
        logits = self.decoder(g, s1, s2, s3, feats.stem, a0)
        return logits + aux_logits, aux_logits


def anomaly_map(logits: torch.Tensor) -> torch.Tensor:
    """Anomaly probability N×H×W: softmax over the two classes, channel 1."""
    return torch.softmax(logits, dim=1)[:, 1]


def build_model(cfg: ModelConfig, encoder_weights: str | None = None) -> SLSGNet:
    """A fresh network; `encoder_weights` is "imagenet", "random" or a file (None: leave as constructed)."""
    model = SLSGNet(cfg)
    if encoder_weights is not None:
        from slsg.model.weights import load_trunk_weights

        load_trunk_weights(model.encoder, cfg.backbone, encoder_weights)
    return model
