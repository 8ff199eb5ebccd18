"""Anomaly synthesis (reference §2): a Perlin region of the good image replaced by texture or self content.

Differences from the reference, on purpose: every random draw comes from the `rng` passed in (seeded
per sample by the caller); the mask loop falls back to the bare Perlin mask after `MAX_RULE_TRIES`
tries so it always ends with a non-empty mask; the blend rounds only inside the mask (the reference
truncated the whole float image, shifting untouched pixels by one level); constants given for 256
pixels are scaled to the working size; a draw that changes fewer than `MIN_CHANGED` of its mask's pixels (the
mask fell on a shuffled cell that stayed in place, on a flipped symmetric part, on the same image drawn as
"other") is drawn again, because a label over unchanged pixels teaches the model to flag normal ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from slsg.data.augment import color_jitter, copy_bands_outward, gaussian_blur, grid_shuffle
from slsg.data.perlin import perlin_mask
from slsg.data.presets import Preset
from slsg.data.textures import TextureSource

MAX_RULE_TRIES = 100
#: every synthetic anomaly changes at least this share of the pixels inside its mask (none outside)
MIN_CHANGED = 0.5
MAX_DRAWS = 20


@dataclass
class Synthesised:
    image: np.ndarray  # uint8 BGR, the anomalous image
    mask: np.ndarray  # bool H×W, never empty
    source: str  # "self" | "texture"
    draws: int = 1  # how many anomalies were drawn to get one that changes its mask (1 almost always)


def _scaled(n: float, side: int) -> int:
    """A length given for a 256-pixel side, at this side (rows scale with the height, columns with the width)."""
    return max(1, int(round(n * side / 256)))


def _kernel(h: int, w: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.ones((_scaled(h, shape[0]), _scaled(w, shape[1])), np.uint8)


def _pick(choices, rng: np.random.Generator):
    w = np.array([c.weight for c in choices], np.float64)
    return choices[int(rng.choice(len(choices), p=w / w.sum()))]


def _jitter_self(temp: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    if mode == "none":
        return temp
    u = rng.random()
    if u > 0.8 or (mode == "pushpins" and u > 0.3):
        strong = rng.random() < 0.7
        temp = (color_jitter(temp, rng, 0.4, 0.4, hue=0.2) if strong
                else color_jitter(temp, rng, 0.2, 0.2, 0.1))
    elif mode == "screw_bag":
        temp = color_jitter(temp, rng, 0.7, 0.7, hue=0.45)
    if rng.random() < 0.2:
        temp = gaussian_blur(temp, 2.0 * min(temp.shape[:2]) / 256)
    return temp


def self_source(image: np.ndarray, others: Sequence[np.ndarray], preset: Preset,
                rng: np.random.Generator) -> np.ndarray:
    """Logical-anomaly content: the image flipped/jittered/shuffled, or another good image (§2.2)."""
    temp = image[::-1, ::-1].copy() if rng.random() < 0.5 else image.copy()
    temp = _jitter_self(temp, preset.jitter, rng)
    choice = _pick(preset.choices, rng) if preset.choices else None
    steps = choice.steps if choice else ()
    src = temp
    for step in steps:
        if step[0] == "other":
            src = others[int(rng.integers(len(others)))].copy() if len(others) else image.copy()
        elif step[0] == "vflip":
            src = src[::-1].copy()
        elif step[0] == "hflip":
            src = src[:, ::-1].copy()
        elif step[0] == "shuffle":
            src = grid_shuffle(src, step[1], step[2], rng)
        elif step[0] == "bands":
            src = copy_bands_outward(src)
        else:
            raise ValueError(f"unknown source step {step!r} in preset {preset.name}")
    return np.ascontiguousarray(src)


class _RuleState:
    """The pushpins/splicing rules weaken and switch off after 16 uses, as in the reference."""

    def __init__(self):
        self.uses = 0
        self.tau = 36


def _apply_rule(mask: np.ndarray, preset: Preset, is_self: bool, image: np.ndarray, source: np.ndarray,
                state: _RuleState, rng: np.random.Generator) -> np.ndarray:
    size = mask.shape[:2]
    p = rng.random()
    rule = preset.mask_rule
    if rule == "pushpins" and is_self and p > 0.25 and state.uses < 16:
        state.uses += 1
        bright = (source[..., 0] > state.tau).astype(np.uint8)
        mask = mask & cv2.dilate(bright, _kernel(5, 5, size)).astype(bool)
        if state.uses % 3 == 0:
            state.tau = max(2, state.tau - 1)
    elif rule == "splicing_connectors" and is_self and p > 0.8 and state.uses < 16:
        state.uses += 1
        fg = (source[..., 0] > 20).astype(np.uint8)
        mask = cv2.dilate(cv2.erode(fg, _kernel(6, 13, size)), _kernel(9, 15, size)).astype(bool)
    elif rule == "juice_bottle":
        fg = (image[..., 0] > 8).astype(np.uint8)
        mask = mask & cv2.dilate(cv2.erode(fg, _kernel(15, 15, size)), _kernel(3, 3, size)).astype(bool)
        mask[:, _scaled(201, size[1]):] = False
        mask[_scaled(240, size[0]):, :] = False
    elif rule == "breakfast_box" and p > 0.8:
        mask = mask.copy()
        mask[_scaled(140, size[0]):_scaled(204, size[0]) + 1, _scaled(140, size[1]):_scaled(204, size[1]) + 1] = True
    return mask


def make_mask(preset: Preset, is_self: bool, image: np.ndarray, source: np.ndarray,
              rng: np.random.Generator, region: np.ndarray | None = None) -> np.ndarray:
    """Perlin mask with the category's foreground rule, inside `region` (the object, where one was found), redrawn
    until it is large enough (§2.3)."""
    shape = image.shape[:2]
    min_area = max(1, int(round(preset.min_area_256 * shape[0] * shape[1] / 256**2)))
    state = _RuleState()
    for attempt in range(10 * MAX_RULE_TRIES):
        mask = perlin_mask(shape, 2 if is_self else 3, 0.4 if is_self else 0.5, rng)
        if attempt < MAX_RULE_TRIES:
            mask = _apply_rule(mask, preset, is_self, image, source, state, rng)
            if region is not None:
                mask = mask & region
        if int(mask.sum()) >= min_area:
            return mask
    raise RuntimeError("no Perlin mask reached the minimum area; this should not happen")


def draw_beta(preset: Preset, is_self: bool, rng: np.random.Generator, fix_bugs: bool = False) -> float:
    if preset.beta_bug is not None and not fix_bugs:
        return float(rng.uniform(*preset.beta_bug))
    if is_self:
        return float(rng.uniform(*preset.beta_self))
    if preset.beta_texture is None:
        return 0.75 if rng.random() < 0.25 else float(rng.uniform(0.0, 0.9))
    return float(rng.uniform(*preset.beta_texture))


def blend(image: np.ndarray, source: np.ndarray, mask: np.ndarray, beta: float) -> np.ndarray:
    """Inside the mask: (1−β)·source + β·image; outside: the image untouched."""
    out = image.copy()
    mixed = (1.0 - beta) * source[mask].astype(np.float32) + beta * image[mask].astype(np.float32)
    out[mask] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out


def synthesize(image: np.ndarray, preset: Preset, rng: np.random.Generator, others: Sequence[np.ndarray],
               textures: TextureSource, fix_bugs: bool = False, region: np.ndarray | None = None) -> Synthesised:
    """One synthetic anomaly from a good uint8 BGR image (already colour-jittered), sides multiples of 32; inside
    `region` (bool H×W, the object) when given."""
    if image.ndim != 3 or image.shape[0] % 32 or image.shape[1] % 32:
        raise ValueError(f"synthesis needs an H×W×3 image whose sides are each a multiple of 32, got {image.shape}")
    best: tuple[float, np.ndarray, np.ndarray, str] | None = None
    for draw in range(1, MAX_DRAWS + 1):
        is_self = rng.uniform(0.0, preset.r_max) < 0.35
        source = self_source(image, others, preset, rng) if is_self else textures.draw(rng)
        mask = make_mask(preset, is_self, image, source, rng, region)
        beta = draw_beta(preset, is_self, rng, fix_bugs)
        out = blend(image, source, mask, beta)
        changed = (out != image).any(axis=-1) & mask
        share = float(changed.sum()) / float(mask.sum())
        kind = "self" if is_self else "texture"
        if share >= MIN_CHANGED:
            return Synthesised(out, mask, kind, draw)
        if best is None or share > best[0]:
            best = (share, out, changed, kind)
    share, out, changed, kind = best
    if not changed.any():
        raise RuntimeError(f"{MAX_DRAWS} synthetic anomalies left the image unchanged: is the image one flat colour?")
    return Synthesised(out, changed, kind, MAX_DRAWS)  # the label is exactly the pixels that changed
