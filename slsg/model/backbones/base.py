"""What a backbone family declares once: its trunk, normalisation, feature taps, decoder widths, weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class BackboneSpec:
    """Every fact about one backbone, in one place (timm-style: one file per family registers its specs).

    - `channels`: (stem, f1, f2, f3, f4) channel counts of `build_trunk()`'s Features.
    - `normalization`: the name in `slsg.model.preprocess.NORMALIZATIONS` the weights were trained with.
    - `decoder_widths`: the U-Net decoder's (w3, w2, w1) when the config does not say.
    - `encoder_bn`: the default BatchNorm mode of the frozen encoder ("train" follows the reference).
    - `imagenet_file`: where the ImageNet weights come from (raises `WeightsError` naming the ways out).
    - `unused_key`: keys of that file the trunk does not build (classifier, deeper blocks), tolerated on load.
    - `build_context`: the frozen modules after f4 that the global-context head pools (deeper, more
      semantic stages); None when f4 is already the deepest stage worth pooling.
    - `context_channels`: channels of each `build_context()` output.
    """

    name: str
    build_trunk: Callable[[], nn.Module]
    channels: tuple[int, int, int, int, int]
    normalization: str
    decoder_widths: tuple[int, int, int]
    encoder_bn: str
    imagenet_file: Callable[[], Path]
    unused_key: Callable[[str], bool] = lambda key: False
    build_context: Callable[[], nn.Module] | None = None
    context_channels: tuple[int, ...] = ()


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def backbone_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)
