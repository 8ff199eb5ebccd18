"""Pre-training configuration, saved beside every pre-trained encoder so it says how it was made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from slsg.model.config import BACKBONES


@dataclass
class PretrainConfig:
    """Masked-patch inpainting + patch-position pretext on good images.

    The image is cut into a `grid`×`grid` lattice of cells. `mask_ratio` of the cells are hidden (filled with
    the normalisation mean, i.e. 0) and reconstructed; `shuffle_ratio` of the visible cells swap places and a
    head on the deepest features says, for every moved cell, which cell it came from.
    `encoder_lr_scale` None → 1.0 from random initialisation, 0.1 from ImageNet (keep what is already good).
    `val_fraction` and `seed` must match `slsg train` so the held-out threshold images are never seen here.
    """

    backbone: str = "resnet18"
    size: int = 256
    init: str = "imagenet"  # "imagenet" | "random" | a trunk weights file
    steps: int = 2000
    batch: int = 8
    lr: float = 1e-3
    encoder_lr_scale: float | None = None
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grid: int = 8
    mask_ratio: float = 0.3
    shuffle_ratio: float = 0.3
    w_l1: float = 1.0
    w_ssim: float = 1.0
    w_position: float = 0.5
    decoder_width: int = 64
    recalibrate_bn: bool = True  # re-estimate BatchNorm statistics on clean good images at the end
    seed: int = 0
    val_fraction: float = 0.1
    checkpoint_every: int = 250
    log_every: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.size <= 0 or self.size % 32:
            raise ValueError(f"input size {self.size} is not a positive multiple of 32 (e.g. 128, 256)")
        if self.grid < 2 or self.size % self.grid:
            raise ValueError(f"grid {self.grid} must be ≥ 2 and divide the size {self.size}")
        if self.steps < 0 or self.batch < 1:
            raise ValueError("steps must be ≥ 0 and batch ≥ 1")
        if not 0.0 < self.mask_ratio < 1.0 or not 0.0 <= self.shuffle_ratio < 1.0:
            raise ValueError("mask_ratio must be in (0, 1) and shuffle_ratio in [0, 1)")
        if min(self.w_l1, self.w_ssim, self.w_position) < 0:
            raise ValueError("loss weights must be ≥ 0")

    @property
    def encoder_lr(self) -> float:
        scale = self.encoder_lr_scale
        if scale is None:
            scale = 1.0 if self.init == "random" else 0.1
        return self.lr * scale

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def same_recipe(self, other: PretrainConfig) -> list[str]:
        """Fields whose change breaks resuming (all but logging/checkpoint cadence and device)."""
        loose = {"checkpoint_every", "log_every", "device"}
        return [f.name for f in fields(self) if f.name not in loose and getattr(self, f.name) != getattr(other, f.name)]
