"""Block sizes of the fused graph-attention kernel, importable without Triton (the engine cache key records the
tiles the TensorRT plugin compiles with on machines that only run engines)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TileConfig:
    """Block sizes of one launch; every block is a power of two ≥ 16 (tl.dot's minimum)."""

    block_m: int = 32  # nodes (rows) per program
    block_n: int = 32  # columns per score tile
    block_c: int = 32  # q channels per dot-product step
    block_d: int = 64  # output channels per dense-path program
    num_warps: int = 4

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_c", "block_d"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"TileConfig.{name} must be a power of two >= 16, got {value}")

    def label(self) -> str:
        """"m32-n32-c32-d64-w4": the config in one token (engine key, sidecar, `slsg-edge info`)."""
        return f"m{self.block_m}-n{self.block_n}-c{self.block_c}-d{self.block_d}-w{self.num_warps}"


#: The tiles the TensorRT plugin compiles the kernel with (the key of every engine holding the plugin).
PLUGIN_TILES = TileConfig()
