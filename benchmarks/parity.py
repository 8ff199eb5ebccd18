"""Accuracy parity: every backend evaluated as a `Predictor` on the same test set, compared with a reference.

Each backend goes through `slsg.evaluation.evaluate_category` (the numbers `slsg evaluate` prints), while a
recorder keeps the maps it returned, so the map error and correlation are over exactly the maps scored.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from edge_runtime.preprocess import as_hw
from edge_runtime.statistics import pearson
from slsg.data import open_dataset
from slsg.data.synthetic_scene import SMALL, write_dataset
from slsg.evaluation import as_outputs, evaluate_category

Predictor = Callable[[np.ndarray], object]  # → Outputs (or bare maps)
SHARED_SET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mvtec_ad_bottle_256"


class RecordingPredictor:
    """Calls `predict` and keeps a copy of every map batch it returns, in order."""

    def __init__(self, predict: Predictor) -> None:
        self.predict = predict
        self.batches: list[np.ndarray] = []

    def __call__(self, images: np.ndarray):
        out = as_outputs(self.predict(images), len(images))
        self.batches.append(out.maps.copy())
        return out

    @property
    def maps(self) -> np.ndarray:
        return np.concatenate(self.batches) if self.batches else np.zeros((0,), np.float32)


def map_agreement(maps: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Max/mean absolute error and Pearson correlation of two equally shaped stacks of maps."""
    if maps.shape != reference.shape:
        raise ValueError(f"maps {maps.shape} and reference maps {reference.shape} differ in shape")
    diff = np.abs(maps.astype(np.float64) - reference.astype(np.float64))
    a, b = maps.ravel().astype(np.float64), reference.ravel().astype(np.float64)
    corr = pearson(a, b)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "correlation": corr}


def evaluate_backends(predictors: dict[str, Predictor], category, size: tuple[int, int],
                      reference: str, batch: int = 8, pixel: bool = False) -> dict:
    """{backend: {auroc, …, vs reference: map error, correlation, AUROC drop in points}}."""
    if reference not in predictors:
        raise ValueError(f"reference backend {reference!r} is not among {sorted(predictors)}")
    results, maps, scores = {}, {}, {}
    for name, predict in predictors.items():
        rec = RecordingPredictor(predict)
        res = evaluate_category(rec, category, size, batch=batch, progress=False, pixel=pixel)
        maps[name] = rec.maps
        scores[name] = np.array([r.score for r in res.images])
        results[name] = {
            "auroc": res.image.overall,
            "auroc_max": res.image_max.overall,
            "pixel_auroc": res.pixel["all"].pixel_auroc if "all" in res.pixel else None,
            "images": len(res.images),
            "seconds": res.seconds,
            "image_scores": scores[name].tolist(),
        }
    ref = results[reference]
    for name, r in results.items():
        r.update({f"map_{k}": v for k, v in map_agreement(maps[name], maps[reference]).items()})
        r["score_max_abs"] = float(np.abs(scores[name] - scores[reference]).max())
        r["auroc_drop_points"] = (
            100.0 * (ref["auroc"] - r["auroc"]) if ref["auroc"] is not None and r["auroc"] is not None else None
        )
    return {"reference": reference, "category": category.name, "layout": category.layout, "backends": results}


def open_parity_set(data: Path | None, category: str | None, size: int | tuple[int, int], stack: ExitStack):
    """The given set; else the shared MVTec AD bottle set when present; else a small synthetic set."""

    if data is None and SHARED_SET.is_dir():
        data, category = SHARED_SET, category or "bottle"
    if data is None:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="slsg-bench-data-")))
        data = write_dataset(tmp, seed=0, counts=SMALL, size=max(as_hw(size)))
    cats = open_dataset(Path(data), category)
    if len(cats) != 1:
        names = ", ".join(c.name for c in cats)
        raise ValueError(f"{data} holds several categories ({names}): pick one with --category")
    return cats[0]
