"""Frozen encoders behind one interface, one file per family, each registering a `BackboneSpec`.

Adding a backbone = one new file here that builds its trunk (returning `Features`) and registers its spec.
Where weights files come from and how they are read is `slsg.model.weights`; filling a trunk from one is here,
where the spec that names its keys is known.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from slsg.model.backbones import efficientnet_lite, resnet  # noqa: F401  (registers the specs)
from slsg.model.backbones.base import BackboneSpec, Features, backbone_names, backbone_spec, register
from slsg.model.weights import WeightsError, read_state_dict


def build_trunk(name: str):
    return backbone_spec(name).build_trunk()


def load_trunk_weights(trunk: nn.Module, backbone: str, source: str | Path) -> str:
    """Fill a trunk from `source`: "imagenet", "random" or a file path. Returns what was loaded, for the config."""
    if str(source) == "random":
        return "random"
    spec = backbone_spec(backbone)
    if str(source) == "imagenet":
        path = spec.imagenet_file()
    else:
        path = Path(source)
        if path.is_dir():  # an ENCODER folder written by `slsg pretrain`
            path = path / "encoder.safetensors"
    sd = read_state_dict(path)
    own = trunk.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own and not spec.unused_key(k)]
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit the {backbone} encoder: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            "Is it a weights file for another architecture?"
        )
    bad = [k for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        raise WeightsError(f"{path}: shapes differ for {bad[:3]} — weights of another architecture")
    trunk.load_state_dict({k: sd[k] for k in own}, strict=True)
    return str(source) if str(source) == "imagenet" else f"file:{path.name}"


__all__ = [
    "BackboneSpec",
    "Features",
    "backbone_names",
    "backbone_spec",
    "build_trunk",
    "load_trunk_weights",
    "register",
]
