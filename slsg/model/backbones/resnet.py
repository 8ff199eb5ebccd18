"""ResNet-18, wired as the SLSG reference (no max-pool); parameter names are torchvision's."""

from __future__ import annotations

import torch
from torch import nn

from slsg.model.backbones.base import BackboneSpec, Features, register
from slsg.model.weights import resnet18_imagenet_file


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


RESNET18 = register(BackboneSpec(
    name="resnet18",
    build_trunk=ResNet18Trunk,
    channels=ResNet18Trunk.channels,
    normalization="imagenet",
    decoder_widths=(256, 128, 64),
    encoder_bn="train",  # the reference lets the frozen encoder's BN follow train/eval mode
    imagenet_file=resnet18_imagenet_file,
))
