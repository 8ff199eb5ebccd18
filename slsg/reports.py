"""Rendering what `slsg.evaluation` computed: the SLSG authors' table, per-head tables, JSON, CSV, histograms."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from edge_runtime.optional import lazy
from edge_runtime.scoring import TOP_K, is_anomalous
from edge_runtime.statistics import binomial_interval
from slsg.evaluation import CategoryResult, ThresholdCheck, mean_metrics

#: Imported when a histogram is first drawn (half a second of every `slsg` start-up otherwise).
matplotlib = lazy("matplotlib", "train", "Drawing score histograms")
plt = lazy("matplotlib.pyplot", "train", "Drawing score histograms")

ROW_NAMES = {
    "structural": "Structural",
    "logical": "Logical",
    "overall": "Mean (all test images)",
    "mean_ls": "½(L+S)",
    "overall_max": "Mean, max-pixel score",
    "pixel_auroc": "Pixel AUROC",
}


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
    "image_score": "the model's decision score (graph output `score`): the SLSG head's alone, or the fusion of "
                   "the heads' normalised scores (the RUN's config.json `scores`, the bundle manifest `scores`)",
    "score_slsg": f"SLSG alone: mean of the top-{TOP_K} anomaly-map values at the model size (edge_runtime.scoring)",
    "score_global": "global-context head: Mahalanobis distance of pooled encoder features to the good-image Gaussian",
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
            "image_auroc_per_head": {h: asdict(a) for h, a in r.heads.items()},
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

    matplotlib.use("Agg")

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


HEAD_ROWS = ("logical", "structural", "overall", "mean_ls")


def head_table(result: CategoryResult, title: str | None = None) -> Table:
    """Image AUROC per head (SLSG alone, global head alone) beside the decision score, one row per split."""
    table = Table(title=title or f"{result.category}: image AUROC per head")
    table.add_column("split")
    columns = [(f"{h} alone", a) for h, a in result.heads.items()] + [("decision score", result.image)]
    for name, _ in columns:
        table.add_column(name, justify="right")
    for key in HEAD_ROWS:
        cells = [getattr(a, key) for _, a in columns]
        if all(c is None for c in cells):
            continue
        table.add_row(ROW_NAMES[key], *(_fmt(c) for c in cells))
    return table


def write_image_csv(result: CategoryResult, path: Path, threshold: float | None = None) -> Path:
    """One row per test image: label, kind, defect types, decision score, each head's score, verdict — so a
    user can see what was missed and by which head."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heads = sorted({h for i in result.images for h in i.heads})
    fields = ["path", "label", "kind", "defects", "score", *(f"score_{h}" for h in heads), "max_pixel",
              "threshold", "verdict"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for i in result.images:
            verdict = "" if threshold is None else ("NG" if i.score > threshold else "OK")
            writer.writerow({"path": i.path, "label": i.label, "kind": i.kind, "defects": ";".join(i.defects),
                             "score": f"{i.score:.6g}", **{f"score_{h}": f"{i.heads[h]:.6g}" for h in i.heads},
                             "max_pixel": f"{i.max_score:.6g}",
                             "threshold": "" if threshold is None else f"{threshold:.6g}", "verdict": verdict})
    return path


def caught_table(result: CategoryResult, check: ThresholdCheck, title: str | None = None) -> Table:
    """At the line's threshold: how many good images are flagged (against the rate asked) and how many anomalies
    of each kind caught, each share with its 95 % binomial interval."""
    table = Table(title=title or f"{result.category}: at the threshold {check.threshold:.4g} "
                                 f"(set for {check.asked:.1%} false rejects)")
    for col in ("images", "n", "flagged NG", "share", "95 % interval"):
        table.add_column(col, justify="right" if col != "images" else "left")
    groups: dict[str, list[float]] = {}
    for i in result.images:
        groups.setdefault("good" if i.kind == "good" else i.label, []).append(i.score)
    for name, scores in sorted(groups.items(), key=lambda kv: (kv[0] != "good", kv[0])):
        flagged = int(np.count_nonzero(is_anomalous(np.asarray(scores), check.threshold)))
        low, high = binomial_interval(flagged, len(scores))
        share = f"{flagged / len(scores):.1%}"
        if name == "good" and check.above_asked:
            share = f"[red]{share}[/]"
        table.add_row(name, str(len(scores)), str(flagged), share, f"{low:.1%}…{high:.1%}")
    return table
