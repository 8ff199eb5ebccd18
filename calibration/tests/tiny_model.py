"""A small network shaped like the SLSG export: same input/output contract and the same kinds of ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge_runtime.preprocess import IMAGENET
from edge_runtime.scoring import TOP_K

SIZE = 32
NEIGHBOURS = 5


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinySLSG(nn.Module):
    """uint8 NHWC BGR → Cast/Div/Sub/Transpose → convs → graph block (normalize, MatMul, TopK, gather, max,
    softmax) → bilinear upsample + skip Add → 2-class softmax map → top-k mean score."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET.mean).view(1, 1, 1, 3) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET.std).view(1, 1, 1, 3) * 255.0)
        self.enc1 = _cbr(3, 8)
        self.enc2 = _cbr(8, 16, 2)
        self.enc3 = _cbr(16, 16, 2)
        self.q = nn.Conv2d(16, 8, 1)
        self.k = nn.Conv2d(16, 8, 1)
        self.v = nn.Conv2d(16, 16, 1)
        self.fuse = _cbr(8, 8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (image.float().flip(-1) - self.mean) / self.std
        x = x.permute(0, 3, 1, 2)
        f1 = self.enc1(x)
        f = self.enc3(self.enc2(f1))
        n, c, h, w = f.shape
        q = F.normalize(self.q(f).flatten(2).transpose(1, 2), dim=-1)
        k = F.normalize(self.k(f).flatten(2).transpose(1, 2), dim=-1)
        v = self.v(f).flatten(2).transpose(1, 2)
        sim = q @ k.transpose(1, 2)
        _, idx = sim.topk(NEIGHBOURS, dim=-1)
        length = v.shape[1]
        neigh = torch.gather(v.unsqueeze(1).expand(-1, length, -1, -1), 2,
                             idx.unsqueeze(-1).expand(-1, -1, -1, v.shape[-1]))
        rel = (neigh - v.unsqueeze(2)).amax(dim=2)
        att = torch.softmax(sim, dim=-1) @ v
        g = (rel + att).transpose(1, 2).reshape(n, c, h, w)
        up = F.interpolate(g, scale_factor=4, mode="bilinear", align_corners=False)
        y = self.fuse(up[:, :8] + f1)
        amap = torch.softmax(self.head(y), dim=1)[:, 1:2]
        score = amap.flatten(1).topk(TOP_K, dim=1).values.mean(dim=1)
        return amap, score


def train_tiny_model(steps: int = 60, seed: int = 0) -> TinySLSG:
    """A few steps of map supervision on pasted patches, so scores separate good from bad."""
    torch.manual_seed(seed)
    net = TinySLSG()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for step in range(steps):
        good = good_images(8, seed + 100 + step)
        bad, masks = anomalous_images(8, seed + 200 + step, with_masks=True)
        x = torch.from_numpy(np.concatenate([good, bad]))
        target = torch.from_numpy(np.concatenate([np.zeros_like(masks), masks])).float()[:, None]
        amap, _ = net(x)
        loss = F.binary_cross_entropy(amap.clamp(1e-6, 1 - 1e-6), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def export_tiny_model(path: Path, seed: int = 0, steps: int = 60) -> Path:
    net = train_tiny_model(steps, seed)
    dummy = torch.zeros(1, SIZE, SIZE, 3, dtype=torch.uint8)
    torch.onnx.export(net, (dummy,), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
                      dynamic_axes={"image": {0: "N"}, "anomaly_map": {0: "N"}, "score": {0: "N"}},
                      opset_version=17, dynamo=False)
    return path


def good_images(n: int, seed: int) -> np.ndarray:
    """Smooth 'product' images: a gradient background with a centred disc, small jitter per image."""
    gen = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        base = 60 + 60 * xx / SIZE + gen.normal(0, 4, (SIZE, SIZE))
        disc = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) < (SIZE / 4 + gen.normal(0, 0.5)) ** 2
        img = np.stack([base, base * 0.9, base * 0.8], -1)
        img[disc] = [40 + gen.normal(0, 3), 160, 200]
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def anomalous_images(n: int, seed: int, with_masks: bool = False):
    """Good images with a scratch-like patch of random colour pasted somewhere (and its masks if asked)."""
    gen = np.random.default_rng(seed + 1000)
    imgs = good_images(n, seed)
    masks = np.zeros((n, SIZE, SIZE), np.float32)
    for i in range(n):
        y, x = gen.integers(2, SIZE - 10, 2)
        imgs[i, y:y + 8, x:x + 3] = gen.integers(0, 256, 3)
        masks[i, y:y + 8, x:x + 3] = 1.0
    return (imgs, masks) if with_masks else imgs
