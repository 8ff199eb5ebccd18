"""Training configuration; defaults are the reference recipe (reference §3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from slsg.heads.fusion import DEFAULT_RULE, RULES, heads_for
from slsg.heads.global_context import AUTO_GRID, check_grid

SYNTHESIS = ("auto", "reference")


@dataclass
class TrainConfig:
    """Batches of `batch` good + `batch` synthetic images; SGD with one cosine from `lr` to 0 over `steps`."""

    steps: int = 7001
    batch: int = 4
    lr: float = 0.04
    momentum: float = 0.9
    weight_decay: float = 3e-5
    focal_gamma: float = 4.0
    w_focal: float = 0.4
    w_l1: float = 0.6
    w_aux: float = 0.3
    brightness: float = 0.1
    saturation: float = 0.1
    seed: int = 0
    workers: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    val_fraction: float = 0.2  # held out of train/good when the data has no validation split (the threshold's images)
    false_reject_rate: float = 0.01
    encoder_weights: str = "imagenet"  # "imagenet" | "random" | a file
    texture_dir: str | None = None
    preset: str | None = None  # None → the category's own preset, else "generic"
    fix_reference_bugs: bool = False
    device: str = "auto"
    head: str = "all"  # which heads make the decision score (slsg.heads.fusion.heads_for)
    # the global head's grid of cells: "auto" (4×4 on a surface, none on an object) or a size (0: none)
    global_grid: int | str = AUTO_GRID
    fusion_rule: str = DEFAULT_RULE
    # auto: anomalies on the object and turned poses where the good images show an object / a part that turns
    # (slsg.data.foreground); reference: the reference's recipe (anomalies anywhere, poses as photographed)
    synthesis: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1:
            raise ValueError("steps must be ≥ 0 and batch ≥ 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

        heads_for(self.head)
        self.global_grid = check_grid(self.global_grid)
        if self.fusion_rule not in RULES:
            raise ValueError(f"fusion_rule must be one of {', '.join(RULES)}, got {self.fusion_rule!r}")
        if self.synthesis not in SYNTHESIS:
            raise ValueError(f"synthesis must be one of {', '.join(SYNTHESIS)}, got {self.synthesis!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def same_recipe(self, other: TrainConfig) -> list[str]:
        """Fields that differ in a way that breaks resuming (everything but logging/checkpoint cadence)."""
        # The heads are fitted after the last step: changing them does not change what the steps did.
        loose = {"checkpoint_every", "log_every", "workers", "device", "head", "fusion_rule", "global_grid"}
        return [f.name for f in fields(self) if f.name not in loose and getattr(self, f.name) != getattr(other, f.name)]
