"""Pixel AUROC and AU-sPRO (MVTec LOCO definition) over images streamed at their native size.

sPRO(t) = mean over defects of min(TP_d(t) / s_d, 1); FPR(t) = pooled false-positive pixels / pooled
defect-free pixels (good images and the defect-free part of anomalous images); a pixel is positive at
threshold t when its score ≥ t. AU-sPRO@L = trapezoid area of sPRO over FPR ∈ [0, L] (linear
interpolation at L) divided by L.

sPRO as a weighted ROC: ranking a defect's pixels by score, the pixel of rank r adds
(min(r, s) − (r − 1)) / s to min(TP/s, 1) when r ≤ ⌈s⌉ and nothing after; ties enter together, so the
order among them does not matter. sPRO(t) is then the weight of those kept pixels scoring ≥ t, divided
by the number of defects, and the curve comes from the same streamed key histogram as the ROC
(`slsg.metrics.curves`), exact through every distinct threshold up to the reported bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from slsg.metrics.curves import KeyHistogram, area_up_to, child_sums, order_keys
from slsg.metrics.defects import Defect, defects_from_mask

NEG, ROC, SPRO = 0, 1, 2
DEFAULT_LIMITS = (0.05, 0.3)


@dataclass
class PixelImage:
    """One test image for the pixel metrics: its map at the ground truth's size, its defects, its groups."""

    anomaly_map: np.ndarray
    defects: list[Defect]
    groups: tuple[str, ...] = ("all",)


@dataclass
class PixelMetrics:
    """Pixel metrics of one group of images; bounds are the maximum absolute error of each value."""

    n_images: int
    n_defects: int
    pixel_auroc: float | None
    pixel_auroc_bound: float | None
    au_spro: dict[float, float] = field(default_factory=dict)
    au_spro_bound: dict[float, float] = field(default_factory=dict)
    passes: int = 1


@dataclass
class _Group:
    hist: KeyHistogram = field(default_factory=lambda: KeyHistogram(3))
    n_images: int = 0
    n_defects: int = 0
    pending: list[tuple[int, int, np.ndarray, np.ndarray]] = field(default_factory=list)


def spro_weights(scores: np.ndarray, saturation: float) -> tuple[np.ndarray, np.ndarray]:
    """(keys, weights) of the pixels of one defect that can still raise its sPRO (the top ⌈s⌉ by score)."""
    keys = order_keys(scores)
    n_keep = min(int(math.ceil(saturation)), keys.size)
    if n_keep < keys.size:
        keys = np.partition(keys, keys.size - n_keep)[keys.size - n_keep :]
    keys = np.sort(keys)[::-1]
    rank = np.arange(1, n_keep + 1, dtype=np.float64)
    return keys, (np.minimum(rank, saturation) - (rank - 1.0)) / saturation


def image_streams(image: PixelImage) -> list[tuple[int, np.ndarray, np.ndarray | float]]:
    """(channel, keys, weights) of one image: defect-free pixels, defect pixels, sPRO-weighted pixels."""
    amap = np.asarray(image.anomaly_map)
    if amap.ndim != 2:
        raise ValueError(f"an anomaly map must be H×W, got shape {amap.shape}")
    union = np.zeros(amap.shape, dtype=bool)
    for d in image.defects:
        if d.mask.shape != amap.shape:
            raise ValueError(
                f"defect mask {d.mask.shape} and anomaly map {amap.shape} differ in size: resize the "
                "map to the ground truth's size first"
            )
        union |= d.mask
    keys = order_keys(amap)
    flat = union.ravel()
    streams: list[tuple[int, np.ndarray, np.ndarray | float]] = [
        (NEG, keys[~flat], 1.0),
        (ROC, keys[flat], 1.0),
    ]
    for d in image.defects:
        if d.area:
            streams.append((SPRO, *spro_weights(amap[d.mask], d.saturation)))
    return streams


def _split_plan(
    groups: dict[str, _Group], limits: Sequence[float], tolerance: float, max_split: int
) -> list[tuple[int, int]]:
    """The cells with the largest bound shares over every group's curves, at most max_split of them."""
    plan: dict[tuple[int, int], float] = {}
    for g in groups.values():
        wanted = [g.hist.split_candidates(ROC, (1.0,), None, tolerance)]
        if g.n_defects:
            wanted.append(g.hist.split_candidates(SPRO, limits, float(g.n_defects), tolerance))
        for cells in wanted:
            for cell, share in cells.items():
                plan[cell] = max(plan.get(cell, 0.0), share)
    return sorted(plan, key=plan.__getitem__, reverse=True)[:max_split]


def _refine(
    groups: dict[str, _Group],
    source: Callable[[], Iterable[PixelImage]],
    plan: list[tuple[int, int]],
    level: int,
) -> None:
    by_level: dict[int, np.ndarray] = {}
    for lv in sorted({lv for lv, _ in plan}):
        by_level[lv] = np.asarray(sorted(c for p, c in plan if p == lv), dtype=np.uint64)
    for image in source():
        for channel, keys, weights in image_streams(image):
            for parent_level, parents in by_level.items():
                ids, sums = child_sums(keys, weights, parent_level, parents, level)
                if ids.size:
                    for name in image.groups:
                        groups[name].pending.append((channel, level, ids, sums))
    for g in groups.values():
        for parent_level, parents in by_level.items():
            g.hist.remove(parent_level, parents)
        merged: dict[int, list] = {}  # one merge per level: merging image by image re-sorts the level every time
        for channel, lv, ids, sums in g.pending:
            w = np.zeros((3, ids.size))
            w[channel] = sums
            merged.setdefault(lv, []).append((ids, w))
        for lv, parts in merged.items():
            g.hist.merge(lv, np.concatenate([ids for ids, _ in parts]), np.concatenate([w for _, w in parts], axis=1))
        g.pending = []


def evaluate_pixels(
    source: Callable[[], Iterable[PixelImage]],
    limits: Sequence[float] = DEFAULT_LIMITS,
    tolerance: float = 1e-4,
    max_passes: int = 3,
    max_split: int = 4096,
) -> dict[str, PixelMetrics]:
    """Pixel AUROC and AU-sPRO per group. `source()` must yield the same images on every call (one per pass).

    Passes stop once every bound is ≤ tolerance; pass 3 makes every split cell exact.
    """
    if not 1 <= max_passes <= 3:
        raise ValueError(f"max_passes must be 1, 2 or 3, got {max_passes}")
    groups: dict[str, _Group] = {}
    for image in source():
        for name in image.groups:
            g = groups.setdefault(name, _Group())
            g.n_images += 1
            g.n_defects += sum(1 for d in image.defects if d.area)
        streams = image_streams(image)
        for name in image.groups:
            for channel, keys, weights in streams:
                groups[name].hist.add(channel, keys, weights)
    passes = 1
    while passes < max_passes:
        plan = _split_plan(groups, limits, tolerance, max_split)
        if not plan:
            break
        passes += 1
        _refine(groups, source, plan, level=passes - 1)
    return {name: _metrics(g, limits, passes) for name, g in groups.items()}


def _metrics(g: _Group, limits: Sequence[float], passes: int) -> PixelMetrics:
    out = PixelMetrics(g.n_images, g.n_defects, None, None, passes=passes)
    roc = g.hist.curve(ROC)
    if roc is not None:
        out.pixel_auroc, out.pixel_auroc_bound = area_up_to(roc, 1.0)
    spro = g.hist.curve(SPRO, float(g.n_defects)) if g.n_defects else None
    if spro is not None:
        for limit in limits:
            value, bound = area_up_to(spro, float(limit))
            out.au_spro[float(limit)], out.au_spro_bound[float(limit)] = float(value), float(bound)
    return out


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], tolerance: float = 1e-6) -> float:
    """AUROC over every pixel of the given maps against same-sized binary masks."""
    images = [PixelImage(np.asarray(m), [Defect(np.asarray(k) != 0, 1.0)]) for m, k in zip(maps, masks)]
    result = evaluate_pixels(lambda: images, limits=(1.0,), tolerance=tolerance)["all"]
    if result.pixel_auroc is None:
        raise ValueError("pixel AUROC needs both defect and defect-free pixels")
    return result.pixel_auroc


def au_spro(
    maps: Sequence[np.ndarray],
    defects: Sequence[list[Defect] | np.ndarray],
    limits: Sequence[float] = DEFAULT_LIMITS,
    tolerance: float = 1e-6,
) -> dict[float, float]:
    """AU-sPRO per FPR limit; `defects[i]` is a list of `Defect` or a mask (its components become defects)."""
    images = []
    for m, d in zip(maps, defects):
        defect_list = d if isinstance(d, list) else defects_from_mask(d)
        images.append(PixelImage(np.asarray(m), defect_list))
    result = evaluate_pixels(lambda: images, limits=limits, tolerance=tolerance)["all"]
    if not result.au_spro:
        raise ValueError("AU-sPRO needs at least one defect and some defect-free pixels")
    return result.au_spro
