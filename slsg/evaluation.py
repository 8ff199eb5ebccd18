"""Evaluate any `Predictor` on a category's test set: image AUROCs (the decision score and each head's), pixel
AUROC and AU-sPRO. Computing only — tables, JSON, CSV and plots are `slsg.reports`.

Test images go through the shared `edge_runtime.preprocess.prepare`, and the scores are the model's own
outputs (the graph's `score` and `score_<head>`), so these numbers describe what a bundle does on the line. A
predictor that returns bare maps is scored with the shared `edge_runtime.scoring.image_score`. Pixel metrics are
computed at each ground truth's native size (maps resized up with bilinear interpolation, as the official MVTec
scripts expect); see `slsg.metrics.pixel` for the exact curve construction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.backends.base import Outputs
from edge_runtime.preprocess import prepare
from edge_runtime.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from edge_runtime.scoring import image_score, is_anomalous
from edge_runtime.statistics import ScoreShift, binomial_interval, score_shift
from slsg.data import read_defect_masks, read_image
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

#: uint8 BGR N×H×W×3 → Outputs (map, decision score, per-head scores); bare N×H×W maps are accepted too.
Predictor = Callable[[np.ndarray], Any]


@dataclass
class Readers:
    """How files are decoded; defaults to `slsg.data` (imported on first use). Tests may inject their own."""

    image: Callable[[Path], np.ndarray] | None = None
    defect_masks: Callable[[Any], list[tuple[np.ndarray, int]]] | None = None

    def resolved(self) -> Readers:
        if self.image is not None and self.defect_masks is not None:
            return self

        return Readers(self.image or read_image, self.defect_masks or read_defect_masks)


@dataclass
class ImageRecord:
    """One test image's outcome: the decision score, each head's own score, and what the image really is."""

    path: str
    label: str
    kind: str
    score: float
    max_score: float
    native_size: tuple[int, int]
    heads: dict[str, float] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)  # LOCO defect types from the masks' pixel values


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
    heads: dict[str, ImageAurocs] = field(default_factory=dict)  # each head's own image AUROCs

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


def as_outputs(result: Any, n: int) -> Outputs:
    """A predictor's result as `Outputs`, checked against the contract; bare maps get the shared score rule."""
    if isinstance(result, Outputs):
        out = result
    else:
        maps = np.asarray(result, dtype=np.float32)
        if maps.ndim == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        if maps.ndim != 3:
            raise ValueError(f"the predictor returned shape {maps.shape} for {n} images; a Predictor must "
                             "return Outputs or anomaly maps N×H×W (or N×1×H×W)")
        score = image_score(maps)
        out = Outputs(maps, score, {"slsg": score})
    if out.maps.ndim != 3 or out.maps.shape[0] != n or out.score.shape != (n,):
        raise ValueError(f"the predictor returned maps {out.maps.shape} and scores {out.score.shape} for {n} "
                         "images; expected N×H×W maps and N scores")
    return out


def predict_outputs(predict: Predictor, images: Sequence[np.ndarray], size: tuple[int, int]) -> Outputs:
    """Run the predictor on uint8 BGR images prepared to the model size."""
    batch = np.stack([prepare(im, size) for im in images])
    return as_outputs(predict(batch), batch.shape[0])


def _predict_samples(
    predict: Predictor,
    samples: Sequence,
    size: tuple[int, int],
    batch: int,
    readers: Readers,
    bar: Progress | None,
    description: str,
):
    """(Outputs for the kept samples, native sizes, samples kept, (path, reason) of unreadable files)."""
    parts, sizes, kept, skipped = [], [], [], []
    pending: list[tuple[Any, np.ndarray]] = []

    def flush() -> None:
        if pending:
            parts.append(predict_outputs(predict, [im for _, im in pending], size))
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
    if parts:
        outputs = Outputs.concat(parts)
    else:
        outputs = Outputs(np.zeros((0, *size), np.float32), np.zeros(0, np.float32))
    return outputs, sizes, kept, skipped


def score_samples(
    predict: Predictor,
    samples: Sequence,
    size: tuple[int, int],
    batch: int = 8,
    readers: Readers | None = None,
    progress: bool = False,
) -> Outputs:
    """The model's outputs on (good) samples, e.g. the validation images a threshold is set from.

    Unreadable files raise (their error names the file): a threshold must not silently rest on fewer images.
    """
    readers = (readers or Readers()).resolved()
    with _progress(progress) as bar:
        outputs, _, kept, skipped = _predict_samples(
            predict, samples, tuple(size), batch, readers, bar, "scoring"
        )
    if skipped:
        raise ValueError(f"cannot read {len(skipped)} image(s), first {skipped[0][0]}: {skipped[0][1]}")
    return outputs


def good_scores(predict: Predictor, samples: Sequence, size: tuple[int, int], **kwargs) -> np.ndarray:
    """The decision scores of `score_samples`."""
    return score_samples(predict, samples, size, **kwargs).score


def defect_types(category, samples: Sequence, readers: Readers) -> list[list[str]]:
    """Per sample, the LOCO defect names its masks' pixel values stand for ([] for good images and layouts
    without a defects_config). When every mask of the category holds one value only, the masks were flattened
    (e.g. resized copies with 0/255 masks) and the values say nothing about the type: all lists stay empty."""
    config = getattr(category, "defects_config", None)
    empty: list[list[str]] = [[] for _ in samples]
    if not config:
        return empty
    names = {int(e["pixel_value"]): e["defect_name"] for e in config}
    values: list[list[int]] = []
    for s in samples:
        vals = sorted({int(v) for mask, _ in readers.defect_masks(s) for v in np.unique(mask) if v}) if s.masks else []
        values.append(vals)
    if len({v for vals in values for v in vals}) <= 1:
        return empty
    return [[names.get(v, f"value {v}") for v in vals] for vals in values]


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
        outputs, sizes, kept, skipped = _predict_samples(
            predict, category.test, size, batch, readers, bar, f"{category.name}: predicting"
        )
        if not kept:
            raise ValueError(f"category {category.name}: no readable test image; check {category.root}")
        maps, scores = outputs.maps, outputs.score
        maxima = maps.reshape(len(kept), -1).max(axis=1)
        kinds = [s.kind for s in kept]
        labels = [s.label for s in kept]
        types = defect_types(category, kept, readers)
        records = [
            ImageRecord(str(s.path), s.label, s.kind, float(sc), float(mx), native, outputs.head_scores(i), t)
            for i, (s, sc, mx, native, t) in enumerate(zip(kept, scores, maxima, sizes, types))
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
                note = (f"pixel metrics cover {with_masks} of {anomalous} anomalous images: "
                        f"{anomalous - with_masks} have no mask (they count for the image metrics)")
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
        heads={h: image_aurocs(v, kinds, labels) for h, v in outputs.heads.items()},
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




@dataclass
class ThresholdCheck:
    """What the RUN's threshold does on the test images: the false-reject rate on the good ones with its binomial
    interval against the rate asked, the defects caught, and whether the test goods score like the good reference
    the threshold and each head's normalisation came from (per head and for the decision score)."""

    threshold: float
    asked: float
    n_good: int
    false_rejects: int
    interval: tuple[float, float]
    n_defects: int
    caught: int
    shifts: dict[str, ScoreShift] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.false_rejects / self.n_good if self.n_good else float("nan")

    @property
    def above_asked(self) -> bool:
        """The whole interval lies above the rate asked: the threshold does not hold on these good images."""
        return bool(self.n_good and self.interval[0] > self.asked)

    def warnings(self, category: str, fix: str) -> list[str]:
        """What the user must know, each with what to do; `fix` names the command that re-sets the threshold."""
        out = []
        shifted = [h for h, s in self.shifts.items() if s.shifted]
        if self.above_asked:
            out.append(f"{category}: {self.false_rejects} of {self.n_good} good test images flagged "
                       f"({self.rate:.1%}, 95 % {self.interval[0]:.1%}…{self.interval[1]:.1%}) at a threshold set "
                       f"for {self.asked:.1%}: above the rate asked")
        if shifted:
            heads = ", ".join(f"{h} ({self.shifts[h].describe()})" for h in shifted)
            out.append(f"{category}: the good test images do not score like the good images the threshold was set "
                       f"on — higher on {heads}. They look like another session (light, position, a new batch). "
                       f"Set the threshold on the line's own good parts ({fix}), or refit the fitted heads on them "
                       "(`slsg fit-head RUN DATA` with those images as training images)")
        elif self.above_asked:
            out.append(f"{category}: the good test images score like the reference ones, so the excess is the "
                       "reference's own tail: more validation images (or a lower --false-reject-rate) give a "
                       "threshold that holds")
        return out

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "asked": self.asked, "n_good": self.n_good,
                "false_rejects": self.false_rejects, "rate": self.rate, "interval": list(self.interval),
                "above_asked": self.above_asked, "n_defects": self.n_defects, "caught": self.caught,
                "shifts": {h: s.to_dict() for h, s in self.shifts.items()}}


def has_anomalies(result: CategoryResult) -> bool:
    return any(i.kind != "good" for i in result.images)


def threshold_check(result: CategoryResult, threshold: float, asked: float,
                    reference: dict | None = None) -> ThresholdCheck:
    """The threshold on the test images; `reference` is the RUN's `good_reference` (per-head and decision scores
    of the good images the threshold came from), for the shift check."""
    good = [i for i in result.images if i.kind == "good"]
    bad = [i for i in result.images if i.kind != "good"]
    rejects = int(sum(bool(is_anomalous(i.score, threshold)) for i in good))
    caught = int(sum(bool(is_anomalous(i.score, threshold)) for i in bad))
    shifts: dict[str, ScoreShift] = {}
    if reference and len(good) >= 2:
        for head, ref in reference.get("heads", {}).items():
            if len(ref) >= 2 and all(head in i.heads for i in good):
                shifts[head] = score_shift(ref, [i.heads[head] for i in good])
        if len(reference.get("score", [])) >= 2:
            shifts["decision"] = score_shift(reference["score"], [i.score for i in good])
    return ThresholdCheck(threshold, asked, len(good), rejects, binomial_interval(rejects, len(good)), len(bad),
                          caught, shifts)
