"""One image score from several heads: each normalised by good-image statistics, then combined by one rule.

A head's raw score has its own units (SLSG: a probability; the global head: a distance). Each is mapped to
"how far into the good images' own tail" with its good reference (validation images, and the global head's
cross-fitted training images; never test data): z = (s − median) / (q99 − median), so z = 1 at each head's own
1 % tail. The decision score is the max of the z's — NG when *any* head finds the image beyond its good tail
(the heads catch different defects; a mean lets a head that sees nothing dilute one that sees the defect).
Measured against the mean and a q90 spread in docs/global_head.md; the threshold rule (a false-reject rate on
good images) applies to it. With one head the score is that head's raw score, so an SLSG-only model keeps the
reference's score exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from edge_runtime.statistics import quantile

#: Every head a decision score can use: SLSG's map (trained), the global Gaussian and the local patch memory (fitted).
HEADS = ("slsg", "global", "local")
#: Names for sets of heads: `both` is the SLSG + global detector of earlier RUNs, `all` every head.
HEAD_SETS = {"both": ("slsg", "global"), "all": HEADS}
HEAD_CHOICES = (*HEADS, *HEAD_SETS)
RULES = ("max", "mean")
DEFAULT_RULE = "max"
#: The spread is the distance from the median to this quantile of good scores: the heads are put on one scale
#: at their tails, where the decision is made (q90 scales matched the bulk and let SLSG's heavier tail fire on
#: good images; docs/global_head.md).
SPREAD_QUANTILE = 0.99
#: The smallest spread, relative to the good median, a head's score may be divided by: FP16's resolution
#: (2^-10). A head whose good scores vary less than this carries nothing the exported models can reproduce;
#: dividing by the true, tinier spread would turn float rounding between PyTorch and ONNX into whole units of
#: the fused score (seen on an untrained tiny model: spread 3e-6 of a median of 105).
MIN_RELATIVE_SPREAD = 2.0**-10


def heads_for(choice: str) -> tuple[str, ...]:
    """The heads a `--head` value names: one head, a named set, or heads joined by commas (`slsg,local`), always
    in `HEADS` order (the graph's output order)."""
    if choice in HEAD_SETS:
        return HEAD_SETS[choice]
    names = {c.strip() for c in str(choice).split(",") if c.strip()}
    unknown = sorted(names - set(HEADS))
    if not names or unknown:
        sets = ", ".join(f"{name} = {'+'.join(members)}" for name, members in HEAD_SETS.items())
        raise ValueError(f"--head must name heads among {', '.join(HEADS)} (comma-separated) or a set ({sets}), "
                         f"got {choice!r}")
    return tuple(h for h in HEADS if h in names)


@dataclass
class HeadNorm:
    """z = (score − location) / scale, from good validation scores.

    The scale is the good scores' spread, floored at `MIN_RELATIVE_SPREAD` of the median so that a head that
    barely varies on good images cannot amplify float rounding; `floored` records that it was.
    """

    location: float
    scale: float
    n_good: int
    floored: bool = False

    @classmethod
    def from_good_scores(cls, scores: np.ndarray) -> HeadNorm:
        s = np.asarray(scores, dtype=np.float64).ravel()
        if s.size < 2:
            raise ValueError("normalising a head's score needs at least 2 good validation images")
        location = float(np.median(s))
        spread = quantile(s, SPREAD_QUANTILE) - location
        if not spread > 0:
            spread = float(s.std())
        floor = MIN_RELATIVE_SPREAD * abs(location)
        if spread > 0 and spread >= floor:
            return cls(location, float(spread), int(s.size))
        return cls(location, float(floor) or 1.0, int(s.size), floored=True)


@dataclass
class FusionConfig:
    """Which heads make the decision score, how they combine, and each head's normalisation."""

    heads: tuple[str, ...] = ("slsg",)
    rule: str = DEFAULT_RULE
    norms: dict[str, HeadNorm] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.heads = tuple(self.heads)
        if self.rule not in RULES:
            raise ValueError(f"fusion rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if len(self.heads) > 1 and set(self.norms) != set(self.heads):
            raise ValueError(f"fusing {self.heads} needs a normalisation for each head, have {sorted(self.norms)}")

    @property
    def fused(self) -> bool:
        return len(self.heads) > 1

    def to_dict(self) -> dict:
        return {"heads": list(self.heads), "rule": self.rule, "norms": {k: asdict(v) for k, v in self.norms.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> FusionConfig:
        return cls(tuple(d.get("heads", ("slsg",))), d.get("rule", DEFAULT_RULE),
                   {k: HeadNorm(**v) for k, v in d.get("norms", {}).items()})

    def describe(self) -> str:
        if not self.fused:
            return f"the {self.heads[0]} head's own score"
        return (f"{self.rule} of the heads' normalised scores "
                f"(score − good median) / (good q{SPREAD_QUANTILE:g} − median)")


def fuse_numpy(cfg: FusionConfig, heads: dict[str, np.ndarray]) -> np.ndarray:
    """The fusion rule in numpy (the graph's ScoreFusion is its twin; a test proves they agree)."""
    if not cfg.fused:
        return np.asarray(heads[cfg.heads[0]], dtype=np.float32)
    z = np.stack([(np.asarray(heads[h], np.float64) - cfg.norms[h].location) / cfg.norms[h].scale
                  for h in cfg.heads])
    return (z.mean(axis=0) if cfg.rule == "mean" else z.max(axis=0)).astype(np.float32)


class ScoreFusion(nn.Module):
    """forward({head: N scores}) → the N decision scores, inside the exported graph."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        loc = [cfg.norms[h].location if cfg.fused else 0.0 for h in cfg.heads]
        scale = [cfg.norms[h].scale if cfg.fused else 1.0 for h in cfg.heads]
        self.register_buffer("location", torch.tensor(loc, dtype=torch.float32), persistent=False)
        self.register_buffer("inv_scale", 1.0 / torch.tensor(scale, dtype=torch.float32), persistent=False)

    def forward(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.cfg.fused:
            return heads[self.cfg.heads[0]]
        z = (torch.stack([heads[h] for h in self.cfg.heads], dim=1) - self.location) * self.inv_scale
        return z.mean(dim=1) if self.cfg.rule == "mean" else z.amax(dim=1)
