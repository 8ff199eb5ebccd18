"""Frozen encoders behind one interface: `forward(x) -> Features` with the five maps SLSG needs.

Both keep the parameter names of the usual weight files, so those files load with `strict=True`
(ResNet-18: torchvision; EfficientNet-Lite0: the EfficientNet-PyTorch layout of the PyPI package).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Features(NamedTuple):
    """stem: stride-2 skip for the last decoder stage; f1..f4 at strides 2, 4, 8, 16."""

    stem: torch.Tensor
    f1: torch.Tensor
    f2: torch.Tensor
    f3: torch.Tensor
    f4: torch.Tensor


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Trunk(nn.Module):
    """ResNet-18 wired as the SLSG reference: no max-pool, layer1 on the raw conv1 output.

    `fc` is never used; it stays so the torchvision ImageNet file loads strictly.
    """

    channels = (64, 64, 128, 256, 512)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> Features:
        c1 = self.conv1(x)
        stem = self.relu(self.bn1(c1))
        f1 = self.layer1(c1)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return Features(stem, f1, f2, f3, f4)


def _same_pad(kernel: int, stride: int) -> nn.Module:
    """TensorFlow "same" padding for even inputs: asymmetric (more after) at stride 2.

    Inputs are multiples of 32, so every strided conv sees an even size and the padding is static.
    """
    total = kernel - stride if stride > 1 else kernel - 1
    before = total // 2
    return nn.ZeroPad2d((before, total - before, before, total - before))


class MBConv(nn.Module):
    """EfficientNet-Lite inverted residual: no squeeze-excite, ReLU6, BN eps 1e-3."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        bn = dict(eps=1e-3, momentum=0.01)
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **bn)
        self._pad = _same_pad(kernel, stride)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **bn)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **bn)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self.act(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


# (expand, kernel, stride, cout, repeats) of EfficientNet-B0/Lite0 up to the stride-16 stage.
_LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3))
# Blocks whose outputs are the stride 2, 4, 8, 16 features (backbones.md).
_LITE0_TAPS = (0, 2, 4, 10)


class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 up to block 10 (stride 16, 112 channels); later blocks are never built."""

    channels = (32, 16, 24, 40, 112)

    def __init__(self) -> None:
        super().__init__()
        self._pad_stem = _same_pad(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        self.act = nn.ReLU6(inplace=True)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in _LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> Features:
        stem = self.act(self._bn0(self._conv_stem(self._pad_stem(x))))
        taps, y = [], stem
        for i, block in enumerate(self._blocks):
            y = block(y)
            if i in _LITE0_TAPS:
                taps.append(y)
        return Features(stem, *taps)


def build_trunk(name: str) -> nn.Module:
    if name == "resnet18":
        return ResNet18Trunk()
    if name == "efficientnet_lite0":
        return EfficientNetLite0Trunk()
    raise ValueError(f"unknown backbone {name!r}")
