"""Evaluate any `Predictor` on a category's test set: image AUROCs, pixel AUROC and AU-sPRO, tables, plots.

Test images go through the shared `edge_runtime.preprocess.prepare` and are scored with the shared
`edge_runtime.scoring.image_score`, so these numbers describe what a bundle does on the line. Pixel metrics
are computed at each ground truth's native size (maps resized up with bilinear interpolation, as the
official MVTec scripts expect); see `slsg.metrics.pixel` for the exact curve construction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.table import Table

from edge_runtime.preprocess import prepare
from edge_runtime.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from edge_runtime.scoring import TOP_K, image_score
from slsg.metrics import (
    DEFAULT_LIMITS,
    Defect,
    ImageAurocs,
    PixelImage,
    PixelMetrics,
    defects_from_channels,
    defects_from_mask,
    evaluate_pixels,
    image_aurocs,
)

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass
class Readers:
    """How files are decoded; defaults to `slsg.data` (imported on first use). Tests may inject their own."""

    image: Callable[[Path], np.ndarray] | None = None
    defect_masks: Callable[[Any], list[tuple[np.ndarray, int]]] | None = None

    def resolved(self) -> Readers:
        if self.image is not None and self.defect_masks is not None:
            return self
        from slsg.data import read_defect_masks, read_image

        return Readers(self.image or read_image, self.defect_masks or read_defect_masks)


@dataclass
class ImageRecord:
    """One test image's outcome."""

    path: str
    label: str
    kind: str
    score: float
    max_score: float
    native_size: tuple[int, int]


@dataclass
class CategoryResult:
    """Every metric of one category. `pixel` maps a group ("all", and for LOCO "logical"/"structural") to
    its pixel metrics; it is empty when the category has no ground-truth masks (see `pixel_note`)."""

    category: str
    layout: str
    size: tuple[int, int]
    images: list[ImageRecord]
    image: ImageAurocs
    image_max: ImageAurocs
    pixel: dict[str, PixelMetrics]
    limits: tuple[float, ...]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pixel_note: str | None = None
    seconds: float = 0.0

    def au_spro(self, limit: float) -> float | None:
        """Reported AU-sPRO: LOCO → mean of the logical and structural groups (official); else all images."""
        if "logical" in self.pixel and "structural" in self.pixel:
            values = [self.pixel[g].au_spro.get(limit) for g in ("logical", "structural")]
            return None if None in values else 0.5 * (values[0] + values[1])
        group = self.pixel.get("all")
        return None if group is None else group.au_spro.get(limit)

    def metrics(self) -> dict[str, float | None]:
        """Flat metric name → value, in table order (per-defect keys are `defect:<label>`)."""
        out: dict[str, float | None] = {
            "structural": self.image.structural,
            "logical": self.image.logical,
            "overall": self.image.overall,
            "mean_ls": self.image.mean_ls,
            "overall_max": self.image_max.overall,
            "pixel_auroc": self.pixel["all"].pixel_auroc if "all" in self.pixel else None,
        }
        for limit in self.limits:
            out[f"au_spro@{limit:g}"] = self.au_spro(limit)
        if self.layout != "loco" and not set(self.image.per_defect) <= LOCO_LABELS:
            for label, value in self.image.per_defect.items():
                out[f"defect:{label}"] = value
        return out


LOCO_LABELS = {"logical_anomalies", "structural_anomalies"}
ROW_NAMES = {
    "structural": "Structural",
    "logical": "Logical",
    "overall": "Mean (all test images)",
    "mean_ls": "½(L+S)",
    "overall_max": "Mean, max-pixel score",
    "pixel_auroc": "Pixel AUROC",
}


def _progress(enabled: bool) -> Progress | nullcontext:
    if not enabled:
        return nullcontext()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def _tracked(items: Iterable, bar: Progress | None, description: str, total: int | None = None) -> Iterator:
    if bar is None:
        yield from items
        return
    task = bar.add_task(description, total=total if total is not None else len(items))
    for item in items:
        yield item
        bar.advance(task)
    bar.remove_task(task)


def predict_maps(predict: Predictor, images: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Run the predictor on prepared uint8 BGR images; returns float32 N×H×W, checked against the contract."""
    batch = np.stack([prepare(im, size) for im in images])
    maps = np.asarray(predict(batch), dtype=np.float32)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != batch.shape[0]:
        raise ValueError(
            f"the predictor returned shape {maps.shape} for {batch.shape[0]} images; a Predictor must "
            "return anomaly maps N×H×W (or N×1×H×W)"
        )
    return maps


def _predict_samples(
    predict: Predictor,
    samples: Sequence,
    size: tuple[int, int],
    batch: int,
    readers: Readers,
    bar: Progress | None,
    description: str,
):
    """(maps N×h×w, native sizes, samples kept, (path, reason) of unreadable files)."""
    maps, sizes, kept, skipped = [], [], [], []
    pending: list[tuple[Any, np.ndarray]] = []

    def flush() -> None:
        if pending:
            maps.append(predict_maps(predict, [im for _, im in pending], size))
            kept.extend(s for s, _ in pending)
            pending.clear()

    for sample in _tracked(samples, bar, description):
        try:
            image = readers.image(sample.path)
        except ValueError as exc:
            skipped.append((str(sample.path), str(exc)))
            continue
        sizes.append(tuple(int(v) for v in image.shape[:2]))
        pending.append((sample, image))
        if len(pending) >= batch:
            flush()
    flush()
    stacked = np.concatenate(maps) if maps else np.zeros((0, *size), np.float32)
    return stacked, sizes, kept, skipped


def good_scores(
    predict: Predictor,
    samples: Sequence,
    size: tuple[int, int],
    batch: int = 8,
    readers: Readers | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Image scores of (good) samples, e.g. the validation images a threshold is set from.

    Unreadable files raise (their error names the file): a threshold must not silently rest on fewer images.
    """
    readers = (readers or Readers()).resolved()
    with _progress(progress) as bar:
        maps, _, kept, skipped = _predict_samples(
            predict, samples, tuple(size), batch, readers, bar, "scoring"
        )
    if skipped:
        raise ValueError(f"cannot read {len(skipped)} image(s), first {skipped[0][0]}: {skipped[0][1]}")
    return image_score(maps) if len(kept) else np.zeros(0, np.float32)


def _defects(sample, category, readers: Readers) -> list[Defect]:
    channels = readers.defect_masks(sample)
    if category.layout == "loco" and category.defects_config is not None:
        return defects_from_channels(channels, category.defects_config, where=str(sample.path))
    merged = None
    for mask, _ in channels:
        merged = mask != 0 if merged is None else merged | (mask != 0)
    return [] if merged is None else defects_from_mask(merged)


def _pixel_source(
    category,
    kept: Sequence,
    maps: np.ndarray,
    sizes: Sequence[tuple[int, int]],
    readers: Readers,
    split: bool,
) -> Callable[[], Iterable[PixelImage]]:
    def source() -> Iterator[PixelImage]:
        for sample, amap, native in zip(kept, maps, sizes):
            if sample.kind != "good" and not sample.masks:
                continue
            defects = _defects(sample, category, readers) if sample.kind != "good" else []
            shape = defects[0].mask.shape if defects else native
            full = cv2.resize(amap, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            if sample.kind == "good":
                groups = ("all", "logical", "structural") if split else ("all",)
            else:
                groups = ("all", sample.kind) if split else ("all",)
            yield PixelImage(full, defects, groups)

    return source


def evaluate_category(
    predict: Predictor,
    category,
    size: tuple[int, int],
    batch: int = 8,
    progress: bool = True,
    limits: Sequence[float] = DEFAULT_LIMITS,
    readers: Readers | None = None,
    pixel: bool = True,
    tolerance: float = 1e-4,
) -> CategoryResult:
    """Run `predict` over `category.test` and compute every image and pixel metric."""
    start = time.perf_counter()
    readers = (readers or Readers()).resolved()
    size = (int(size[0]), int(size[1]))
    limits = tuple(float(v) for v in limits)
    with _progress(progress) as bar:
        maps, sizes, kept, skipped = _predict_samples(
            predict, category.test, size, batch, readers, bar, f"{category.name}: predicting"
        )
        if not kept:
            raise ValueError(f"category {category.name}: no readable test image; check {category.root}")
        scores = image_score(maps)
        maxima = maps.reshape(len(kept), -1).max(axis=1)
        kinds = [s.kind for s in kept]
        labels = [s.label for s in kept]
        records = [
            ImageRecord(str(s.path), s.label, s.kind, float(sc), float(mx), native)
            for s, sc, mx, native in zip(kept, scores, maxima, sizes)
        ]
        pixel_metrics: dict[str, PixelMetrics] = {}
        note = None
        with_masks = sum(1 for s in kept if s.kind != "good" and s.masks)
        anomalous = sum(1 for s in kept if s.kind != "good")
        if not pixel:
            note = "pixel metrics not asked for"
        elif with_masks == 0:
            note = "no ground-truth masks: pixel AUROC and AU-sPRO are not available"
        else:
            if with_masks < anomalous:
                note = (
                    f"{anomalous - with_masks} anomalous image(s) without masks left out of the pixel metrics"
                )
            split = any(k == "logical" for k in kinds)
            source = _pixel_source(category, kept, maps, sizes, readers, split)
            passes = iter(range(1, 4))

            def tracked_source() -> Iterator[PixelImage]:
                n = next(passes)
                yield from _tracked(
                    source(), bar, f"{category.name}: pixel metrics, pass {n}", total=len(kept)
                )

            pixel_metrics = evaluate_pixels(tracked_source, limits=limits, tolerance=tolerance)
    return CategoryResult(
        category=category.name,
        layout=category.layout,
        size=size,
        images=records,
        image=image_aurocs(scores, kinds, labels),
        image_max=image_aurocs(maxima, kinds, labels),
        pixel=pixel_metrics,
        limits=limits,
        skipped=skipped,
        pixel_note=note,
        seconds=time.perf_counter() - start,
    )


def evaluate_many(
    predictor_for: Callable[[Any], Predictor], categories: Sequence, size: tuple[int, int], **kwargs
) -> list[CategoryResult]:
    """Evaluate several categories (one predictor each, as SLSG trains one model per category).

    Their mean is `mean_metrics(results)`; `render_table` and `results_to_json` include it.
    """
    return [evaluate_category(predictor_for(c), c, size, **kwargs) for c in categories]


def mean_metrics(results: Sequence[CategoryResult]) -> dict[str, float | None]:
    """Category mean of each metric over the categories that have it (per-defect rows are not averaged)."""
    keys: list[str] = []
    for r in results:
        keys += [k for k in r.metrics() if k not in keys and not k.startswith("defect:")]
    out = {}
    for key in keys:
        values = [v for r in results if (v := r.metrics().get(key)) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _row_name(key: str) -> str:
    if key in ROW_NAMES:
        return ROW_NAMES[key]
    if key.startswith("au_spro@"):
        return f"AU-sPRO@{key.split('@', 1)[1]}"
    return f"  {key.split(':', 1)[1]}"


def _fmt(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def render_table(results: Sequence[CategoryResult], title: str = "Image and pixel AUROC, AU-sPRO") -> Table:
    """Categories as columns (plus their mean), metrics as rows, laid out like the SLSG authors' table."""
    table = Table(title=title)
    table.add_column("metric")
    for r in results:
        table.add_column(r.category, justify="right")
    if len(results) > 1:
        table.add_column("mean", justify="right")
    rows: list[str] = []
    for r in results:
        rows += [k for k in r.metrics() if k not in rows]
    mean = mean_metrics(results) if len(results) > 1 else {}
    for key in rows:
        cells = [_fmt(r.metrics().get(key)) for r in results]
        if len(results) > 1:
            cells.append(_fmt(mean.get(key)))
        table.add_row(_row_name(key), *cells)
    return table


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {(f"{k:g}" if isinstance(k, float) else str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


DEFINITIONS = {
    "image_score": f"mean of the top-{TOP_K} anomaly-map values at the model size (edge_runtime.scoring)",
    "structural": "image AUROC over good ∪ structural test images",
    "logical": "image AUROC over good ∪ logical test images",
    "overall": "image AUROC over all test images (the SLSG README's 'Mean')",
    "mean_ls": "½(logical + structural) (the MVTec LOCO convention)",
    "overall_max": "image AUROC over all test images with the max-pixel score",
    "pixel_auroc": "AUROC over all test pixels at the ground truth's native size",
    "au_spro": (
        "MVTec LOCO AU-sPRO up to the FPR limit, normalised by it; LOCO: mean of the logical and "
        "structural groups; otherwise all images, each 8-connected mask component one defect "
        "saturating at its own area (PRO)"
    ),
}


def results_to_json(results: Sequence[CategoryResult], include_images: bool = True) -> dict:
    """Everything measured, JSON-ready: per category (metrics, groups, bounds, images) and the mean."""
    categories = {}
    for r in results:
        entry = {
            "layout": r.layout,
            "size": list(r.size),
            "seconds": r.seconds,
            "metrics": r.metrics(),
            "image_auroc": asdict(r.image),
            "image_auroc_max_pixel": asdict(r.image_max),
            "pixel_groups": {g: asdict(m) for g, m in r.pixel.items()},
            "pixel_note": r.pixel_note,
            "skipped": [{"path": p, "reason": why} for p, why in r.skipped],
            "counts": {
                label: sum(1 for i in r.images if i.label == label)
                for label in sorted({i.label for i in r.images})
            },
        }
        if include_images:
            entry["images"] = [asdict(i) for i in r.images]
        categories[r.category] = entry
    return _json_safe({"definitions": DEFINITIONS, "categories": categories, "mean": mean_metrics(results)})


def score_histogram_png(result: CategoryResult, threshold: float | None, path: Path) -> Path:
    """Histogram of image scores: good against each anomaly type, the decision threshold drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = ["good"] + sorted({i.label for i in result.images if i.label != "good"})
    scores = np.asarray([i.score for i in result.images])
    bins = np.linspace(scores.min(), scores.max() if scores.max() > scores.min() else scores.min() + 1e-6, 41)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label in labels:
        values = [i.score for i in result.images if i.label == label]
        if values:
            ax.hist(values, bins=bins, alpha=0.55, label=f"{label} ({len(values)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4f}")
    ax.set_xlabel(f"image score (mean of top-{TOP_K} map values)")
    ax.set_ylabel("images")
    ax.set_title(f"{result.category}: score distribution")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
