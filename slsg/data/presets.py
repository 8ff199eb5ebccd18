"""Per-category anomaly-synthesis presets: the five MVTec LOCO rules of reference §2 and a generic one.

A preset is data, not code: the self-source choices are weighted step lists, the foreground rule and
the blending ranges are named. Probabilities are the reference's; nested choices are flattened.
"""

from __future__ import annotations

from dataclasses import dataclass

Step = tuple  # ("other",) | ("vflip",) | ("hflip",) | ("shuffle", rows, cols) | ("bands",)


@dataclass(frozen=True)
class SourceChoice:
    weight: float
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Preset:
    name: str
    #: the reference draws r ~ U(0, r_max) and uses the self source when r < 0.35
    r_max: float = 0.6
    #: colour jitter of the self source: "none" | "default" | "pushpins" | "screw_bag"
    jitter: str = "none"
    choices: tuple[SourceChoice, ...] = ()
    #: foreground rule: "none" | "pushpins" | "splicing_connectors" | "juice_bottle" | "breakfast_box"
    mask_rule: str = "none"
    #: minimum mask area in pixels at 256×256 (scaled with the area at other sizes)
    min_area_256: int = 49
    beta_self: tuple[float, float] = (0.0, 0.25)
    #: None = DRAEM default (0.75 with p .25, else U(0, 0.9))
    beta_texture: tuple[float, float] | None = None
    #: breakfast_box's `~scar` bug: this range for both sources unless the fix is asked for
    beta_bug: tuple[float, float] | None = None

    @property
    def p_self(self) -> float:
        return min(1.0, 0.35 / self.r_max)


def _c(weight: float, *steps: Step) -> SourceChoice:
    return SourceChoice(weight, tuple(steps))


PRESETS: dict[str, Preset] = {
    "juice_bottle": Preset(
        "juice_bottle", choices=(_c(0.25, ("shuffle", 3, 3)), _c(0.333, ("vflip",)), _c(0.417, ("other",))),
        mask_rule="juice_bottle", beta_self=(0.0, 0.0), beta_texture=(0.0, 0.0)),
    "breakfast_box": Preset(
        "breakfast_box", r_max=0.7,
        choices=(_c(0.334, ("shuffle", 3, 2)), _c(0.333, ("vflip",)), _c(0.333, ("hflip",))),
        mask_rule="breakfast_box", beta_texture=(0.0, 0.7), beta_bug=(0.0, 0.7)),
    "pushpins": Preset(
        "pushpins", jitter="pushpins",
        choices=(_c(0.25, ("shuffle", 3, 5)), _c(0.333, ("vflip",)), _c(0.417, ("other",))),
        mask_rule="pushpins", min_area_256=64, beta_self=(0.0, 0.0), beta_texture=(0.0, 0.4)),
    "screw_bag": Preset(
        "screw_bag", jitter="screw_bag",
        choices=(_c(0.25, ("shuffle", 4, 4)), _c(0.125, ("vflip",)), _c(0.125, ("hflip",)),
                 _c(0.5, ("other",), ("shuffle", 4, 4)))),
    "splicing_connectors": Preset(
        "splicing_connectors",
        choices=(_c(0.525, ("other",), ("bands",), ("shuffle", 1, 4)), _c(0.175, ("other",)),
                 _c(0.24, ("bands",), ("shuffle", 2, 4)), _c(0.06, ("shuffle", 2, 4))),
        mask_rule="splicing_connectors", beta_self=(0.0, 0.0)),
    "generic": Preset(
        "generic", jitter="default",
        choices=(_c(0.25, ("shuffle", 4, 4)), _c(0.25, ("vflip",)), _c(0.25, ("hflip",)),
                 _c(0.25, ("other",)))),
}


def preset_for(category: str) -> Preset:
    """The LOCO preset of that name, else the generic one."""
    return PRESETS.get(category, PRESETS["generic"])
