"""Frozen encoders behind one interface, one file per family, each registering a `BackboneSpec`.

Adding a backbone = one new file here that builds its trunk (returning `Features`) and registers its spec.
"""

from slsg.model.backbones import efficientnet_lite, resnet  # noqa: F401  (registers the specs)
from slsg.model.backbones.base import BackboneSpec, Features, backbone_names, backbone_spec, register


def build_trunk(name: str):
    return backbone_spec(name).build_trunk()


__all__ = ["BackboneSpec", "Features", "backbone_names", "backbone_spec", "build_trunk", "register"]
