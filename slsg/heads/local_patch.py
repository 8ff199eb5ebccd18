"""The local patch head: a memory of good-patch features, and each patch's distance to its nearest good patch.

SLSG learns *what is wrong where* from synthetic anomalies, and the global head sees *what is in the image*; a
small scratch, pit or crack on a part that turns is neither a pattern SLSG was shown nor a change of the whole
image. A patch memory answers the plain question "does this small patch look like any good patch?" (PatchCore,
Roth et al. 2022): the frozen encoder's mid-level maps (Lite0's stride-8 f3 and stride-16 f4, as PatchCore takes a
ResNet's layers 2 and 3), each averaged over its 3×3 neighbourhood and put on one grid, are the patch features;
a greedy (farthest-point) coreset of the training images' patches is the memory; a patch's anomaly is the
Euclidean distance to its nearest memory patch, the map is those distances and the image score their maximum.

In the exported graph it is one MatMul against the memory (‖q‖² − 2 q·m + ‖m‖²), a ReduceMin and a Sqrt — ops
TensorRT, OpenVINO and ONNX Runtime all run — kept in float (the nearest-neighbour choice is fragile under
quantisation). Its cost is patches × memory × 153 multiply-adds, so grid and memory trade against each other
under one latency budget. Measured label-free (docs/local_head.md: validation images with and without one synthetic
anomaly of the training recipe), patches on f4's grid (16×16 at 256², f3 averaged 2×2 onto it) with a memory of
4096 rank better than f3's grid (32×32) with 2048 on every real set, at half the search cost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.heads.memory import greedy_coreset, memory_columns
from slsg.heads.files import read_head_files, save_head_files
from slsg.model.backbones import Features, backbone_spec

LOCAL_FILE = "local_head.safetensors"
LOCAL_CONFIG = "local_head.json"
#: Feature maps by name in `Features`, and their position in a backbone's `channels` tuple.
_TAPS = {"f1": 1, "f2": 2, "f3": 3, "f4": 4}


@dataclass
class LocalHeadConfig:
    """Which maps make a patch feature and how large the memory is; saved beside the fitted memory."""

    layers: tuple[str, ...] = ("f3", "f4")
    neighbourhood: int = 3  # each map averaged over this many pixels square (PatchCore's local aggregation)
    grid: str = "f4"  # the map whose grid the patches are on (stride 16: 16×16 patches at 256²)
    memory: int = 4096  # coreset size: patches kept from the training images (the latency knob)
    projection: int = 64  # the coreset is chosen in a random projection to this many dims (≥ the features: none)
    max_pool: int = 100_000  # patches the coreset is chosen from (a seeded random subset beyond this)
    seed: int = 0

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        unknown = [name for name in (*self.layers, self.grid) if name not in _TAPS]
        if not self.layers or unknown:
            raise ValueError(f"local head layers and grid must be among {', '.join(_TAPS)}, got "
                             f"{list(self.layers)} on {self.grid}")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError(f"the neighbourhood must be an odd number ≥ 1, got {self.neighbourhood}")
        if self.memory < 1:
            raise ValueError(f"the memory must hold at least one patch, got {self.memory}")

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers)}

    @classmethod
    def from_dict(cls, d: dict) -> LocalHeadConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


class LocalPatchHead(nn.Module):
    """forward(Features) → (distance map N×1×h×w on the finest chosen grid, image score N = the map's maximum)."""

    def __init__(self, backbone: str, cfg: LocalHeadConfig | None = None, memory_size: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LocalHeadConfig()
        self.backbone = backbone
        channels = backbone_spec(backbone).channels
        self.dims = sum(channels[_TAPS[name]] for name in self.cfg.layers)
        m = memory_size or self.cfg.memory
        # Stored as (D+1)×M columns [−2m; ‖m‖²]: the patches with a 1 appended times it give ‖m‖² − 2 m·q for every
        # patch and memory patch, P×M with M contiguous, and the only other pass over it is the minimum along M
        # (ONNX Runtime reduces a contiguous axis ~30× faster than a strided one, and runs this MatMul 4× faster).
        self.register_buffer("memory", torch.zeros(self.dims + 1, m))
        self.train(False)

    def train(self, mode: bool = True) -> LocalPatchHead:
        """Always frozen: the memory comes from a fit, never from gradients."""
        return super().train(False)

    @property
    def memory_size(self) -> int:
        return int(self.memory.shape[1])

    def patches(self, feats: Features) -> torch.Tensor:
        """N×D×h×w patch features: each chosen map averaged over its neighbourhood, then put on the grid map's
        grid — a finer map averaged down to it, a coarser one resized up."""
        maps = [getattr(feats, name) for name in self.cfg.layers]
        grid = tuple(int(v) for v in getattr(feats, self.cfg.grid).shape[-2:])
        k = self.cfg.neighbourhood
        out = []
        for m in maps:
            if k > 1:
                m = F.avg_pool2d(m, k, stride=1, padding=k // 2, count_include_pad=False)
            if tuple(m.shape[-2:]) != grid:
                factor = m.shape[-2] // grid[0]
                m = (F.avg_pool2d(m, factor) if factor > 1 and m.shape[-1] // grid[1] == factor
                     else F.interpolate(m, size=grid, mode="bilinear", align_corners=False))
            out.append(m)
        return torch.cat(out, dim=1)

    def distances(self, patches: torch.Tensor) -> torch.Tensor:
        """N×1×h×w: each patch's Euclidean distance to its nearest memory patch (`nearest_distances`' twin)."""
        n, d, h, w = patches.shape
        q = patches.flatten(2).transpose(1, 2)  # N×P×D, P = h·w
        partial = torch.cat([q, torch.ones_like(q[..., :1])], dim=2) @ self.memory  # N×P×M: ‖m‖² − 2 m·q
        nearest = (partial.amin(dim=2) + (q * q).sum(dim=2)).clamp_min(0.0)  # + ‖q‖², the same for every m
        return torch.sqrt(nearest).reshape(n, 1, h, w)

    def forward(self, feats: Features) -> tuple[torch.Tensor, torch.Tensor]:
        dmap = self.distances(self.patches(feats))
        return dmap, dmap.flatten(1).amax(dim=1)

    def set_memory(self, memory: np.ndarray) -> None:
        memory = np.asarray(memory, dtype=np.float32)
        if memory.ndim != 2 or memory.shape[1] != self.dims:
            raise ValueError(f"local head memory: shape {memory.shape}, expected M×{self.dims}")
        self.memory = torch.from_numpy(memory_columns(memory))


def patch_rows(patches: torch.Tensor) -> np.ndarray:
    """N×D×h×w patch features → (N·h·w)×D float32 rows, image by image."""
    return patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1]).float().cpu().numpy()


@dataclass
class MemoryFit:
    """The memory chosen from a pool of patches, and what the choice saw."""

    memory: np.ndarray
    pool: int
    radius: np.ndarray  # the coreset's coverage radius after each pick (`Coreset.radius`)

    def report(self) -> dict:
        """The radius at a few memory sizes, for the fit record (how much a larger memory would still cover)."""
        sizes = [s for s in (256, 512, 1024, 2048, 4096, 8192) if s <= len(self.radius)] + [len(self.radius)]
        return {"pool": self.pool, "memory": int(len(self.memory)),
                "radius": {str(s): round(float(self.radius[s - 1]), 4) for s in sorted(set(sizes))}}


def choose_memory(rows: np.ndarray, cfg: LocalHeadConfig, seed: int | None = None) -> MemoryFit:
    """The coreset of `rows` (patches of good training images), from a seeded subset when there are more than
    `cfg.max_pool`."""
    seed = cfg.seed if seed is None else seed
    pool = rows
    if len(rows) > cfg.max_pool:
        pool = rows[np.sort(np.random.default_rng(seed).choice(len(rows), cfg.max_pool, replace=False))]
    core = greedy_coreset(pool, cfg.memory, cfg.projection, seed)
    return MemoryFit(pool[core.indices], len(pool), core.radius)


def save_local_head(head: LocalPatchHead, run: Path, report: dict) -> None:
    meta = {"backbone": head.backbone, "config": head.cfg.to_dict(), "dims": head.dims,
            "memory": head.memory_size, "fit": report}
    save_head_files(head, run, LOCAL_FILE, LOCAL_CONFIG, meta, "local_head")


def read_local_config(run: Path) -> LocalHeadConfig | None:
    """The RUN's local-head configuration (what a refit per model file chooses its memory by), None without one."""
    path = Path(run) / LOCAL_CONFIG
    if not path.is_file():
        return None
    return LocalHeadConfig.from_dict(json.loads(path.read_text())["config"])


def load_local_head(run: Path) -> LocalPatchHead | None:
    """The RUN's fitted local head, or None when it has none."""
    saved = read_head_files(run, LOCAL_FILE, LOCAL_CONFIG)
    if saved is None:
        return None
    meta, state = saved
    head = LocalPatchHead(meta["backbone"], LocalHeadConfig.from_dict(meta["config"]), int(meta["memory"]))
    head.load_state_dict(state, strict=True)
    return head.eval()
