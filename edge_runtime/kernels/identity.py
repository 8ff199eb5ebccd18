"""What the fused plugin compiles into an engine, known without importing Triton: the hash of the kernel and plugin
sources, the Triton version and the tile config. An engine holding the plugin carries the PTX compiled from all
three, so the engine cache key holds them: a fixed kernel, another Triton or other tiles mean a rebuild."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edge_runtime.kernels.tiles import PLUGIN_TILES

#: The sources whose code ends up in the engine: the Triton kernel and the plugin's launch parameters.
SOURCES = tuple(Path(__file__).with_name(name) for name in ("graph_attention_triton.py", "trt_plugin.py"))
#: Distributions that install the `triton` module (PyTorch nightlies ship it as pytorch-triton).
TRITON_DISTRIBUTIONS = ("triton", "pytorch-triton")
NO_TRITON = "not installed"


@dataclass(frozen=True)
class PluginBuild:
    kernel_sha256: str
    triton_version: str
    tiles: str


def kernel_sha256() -> str:
    """One hash over the kernel and plugin sources, each prefixed by its name."""
    h = hashlib.sha256()
    for path in SOURCES:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def triton_version() -> str:
    """The installed Triton's version from package metadata (no import), or NO_TRITON."""
    for name in TRITON_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return NO_TRITON


def plugin_build() -> PluginBuild:
    return PluginBuild(kernel_sha256(), triton_version(), PLUGIN_TILES.label())
