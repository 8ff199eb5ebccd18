"""`slsg threshold RUN DATA`: re-set a RUN's threshold from good images without retraining.

The threshold is the quantile of the RUN's own scores (`score`, what the threshold applies to, whatever heads
the model has) on good images: by default DATA's validation split as training makes it (LOCO validation/good,
else the seeded held-out slice of train/good with the RUN's seed and fraction), or every good image with
`all_good` (images the model never trained on, e.g. a folder from the line). The data it came from is recorded
beside the threshold, so `slsg export` computes each model file's threshold from the same images; the value it
replaces is kept in `threshold_history`. This is what a RUN imported from official weights needs first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from edge_runtime.scoring import Threshold, threshold_from_good_scores, threshold_warning
from slsg.checkpoint import CONFIG_FILE, open_run, write_json
from slsg.data.layouts import open_dataset
from slsg.data.loading import load_images
from slsg.training.config import TrainConfig
from slsg.training.data import split_validation

BATCH = 8


@dataclass
class Calibrated:
    new: Threshold
    old: Threshold | None
    n_good: int
    data: dict
    warning: str | None


def good_samples(run_config: dict, data: Path, category: str | None, all_good: bool) -> tuple[list, object, str]:
    """(samples, category, split name): DATA's validation split as training makes it, or all its good images."""

    cats = open_dataset(Path(data), category)
    if len(cats) != 1:
        raise ValueError(f"{data} holds several categories ({', '.join(c.name for c in cats)}): pick one with "
                         "--category")
    cat = cats[0]
    if all_good:
        return list(cat.train) + list(cat.validation), cat, "all good"
    cfg = TrainConfig.from_dict(run_config.get("train", {}))
    _, val = split_validation(cat, cfg.val_fraction, cfg.seed)
    if not val:
        raise ValueError(f"{cat.root} gives no validation images (no validation/good, and too few train/good "
                         "to hold a slice out): add good images, or pass --all-good for images the model never "
                         "trained on")
    return val, cat, "validation"


@torch.no_grad()
def score_good(deploy, samples: list, size, batch: int = BATCH) -> np.ndarray:
    """`score` (the DeployModel's second output) of every sample; an unreadable image raises with its name."""

    images, _ = load_images(samples, size)
    scores = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(np.stack(images[i:i + batch])))
        scores.append(deploy(x)[1].float().cpu().numpy())
    return np.concatenate(scores).astype(np.float64)


def rethreshold_run(run_dir: Path, deploy, data: Path, category: str | None = None, rate: float | None = None,
                    all_good: bool = False) -> Calibrated:
    """Score DATA's good images with the RUN's detector and write the new threshold into RUN/config.json."""
    run = open_run(Path(run_dir))
    samples, cat, split = good_samples(run.config, data, category, all_good)
    old = run.threshold
    rate = rate if rate is not None else (old.false_reject_rate if old and old.false_reject_rate > 0 else
                                          run.config.get("train", {}).get("false_reject_rate", 0.01))
    size = run.model_config.size
    new = threshold_from_good_scores(score_good(deploy, samples, size), rate)
    record = {"root": str(cat.root), "category": cat.name, "split": split, "n": len(samples)}
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    config = dict(run.config)
    if config.get("threshold"):
        config["threshold_history"] = [*config.get("threshold_history", []),
                                       {"replaced": when, "previous": config["threshold"], "by": "slsg threshold"}]
    config["threshold"] = {**new.to_dict(), "source": split, "data": record, "calibrated": when}
    write_json(Path(run_dir) / CONFIG_FILE, config)
    return Calibrated(new, old, len(samples), record, threshold_warning(new))
