"""Contact sheets: one PNG to see at a glance what a dataset and its synthetic anomalies look like."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime.preprocess import prepare, resize_mask
from slsg.data.images import read_image, write_png
from slsg.data.layouts import Category
from slsg.data.loading import read_mask
from slsg.data.presets import Preset, preset_for
from slsg.data.training_set import SynthesisDataset


def outline(image: np.ndarray, mask: np.ndarray, colour=(255, 0, 255)) -> np.ndarray:
    """The image with the mask's contour drawn over it."""
    out = image.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, colour, 1)
    return out


def _row(title: str, tiles: list[np.ndarray], tile: int, n: int) -> np.ndarray:
    label = np.full((tile, tile, 3), 32, np.uint8)
    for k, word in enumerate(title.split()):
        cv2.putText(label, word, (6, 22 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1,
                    cv2.LINE_AA)
    tiles = [*tiles, *[np.zeros((tile, tile, 3), np.uint8)] * (n - len(tiles))]
    return np.hstack([label, *tiles[:n]])


def contact_sheet(category: Category, preset: Preset | None = None, n: int = 6, tile: int = 128,
                  seed: int = 0, texture_dir: Path | None = None) -> np.ndarray:
    """Rows: good training images; synthetic anomalies (outlined) and their masks; test anomalies with
    their ground truth outlined (first of each defect label)."""
    preset = preset or preset_for(category.name)
    goods = [prepare(read_image(s.path), tile) for s in category.train[:n]]
    rows = [_row("good train", goods, tile, n)]
    size = tile - tile % 32 or 32
    ds = SynthesisDataset(goods, preset, size, seed=seed, texture_dir=texture_dir)
    synth, masks = [], []
    for k in range(n):
        _, aug, m = ds.draw(k)
        synth.append(cv2.resize(outline(aug, m), (tile, tile), interpolation=cv2.INTER_NEAREST))
        masks.append(cv2.resize(np.repeat(m[..., None].astype(np.uint8) * 255, 3, axis=2), (tile, tile),
                                interpolation=cv2.INTER_NEAREST))
    rows += [_row(f"synthetic {preset.name}", synth, tile, n), _row("synthetic masks", masks, tile, n)]
    anomalies = [s for s in category.test if not s.is_good]
    by_label: dict[str, list] = {}
    for s in anomalies:
        by_label.setdefault(s.label, []).append(s)
    picked = []
    while len(picked) < n and any(by_label.values()):
        for items in by_label.values():
            if items and len(picked) < n:
                picked.append(items.pop(0))
    tiles = []
    for s in picked:
        img = prepare(read_image(s.path), tile)
        m = read_mask(s)
        tiles.append(outline(img, resize_mask(m.astype(np.uint8), tile)) if m is not None else img)
    if tiles:
        rows.append(_row("test anomalies", tiles, tile, n))
    return np.vstack(rows)


def write_contact_sheet(category: Category, out: Path, **kwargs) -> Path:
    write_png(Path(out), contact_sheet(category, **kwargs))
    return Path(out)
