"""The RUN's own images, as export needs them: training (calibration), validation (gate, thresholds), test.

Every split is the one training used (`slsg.training.data.split_validation` with the RUN's seed and
validation fraction), so calibration never sees a validation image and no threshold rests on a training
image. Test images serve only as checks (the gate's anomalies, held-out false-reject rates), never to
choose anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slsg.data.layouts import open_dataset
from slsg.data.loading import load_images
from slsg.data.training_set import SynthesisDataset
from slsg.training.config import TrainConfig
from slsg.training.data import split_validation

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """The RUN's dataset split the way training split it."""

    root: Path
    category: object           # slsg.data.layouts.Category
    train: list                # good training samples (calibration draws from these)
    validation: list           # good validation samples (gate goods, per-model thresholds)
    seed: int
    preset: str                # the anomaly-synthesis preset training used

    @property
    def test_anomalies(self) -> list:
        return [s for s in self.category.test if not s.is_good]

    @property
    def test_good(self) -> list:
        return [s for s in self.category.test if s.is_good]


def _train_config(run_config: dict):
    return TrainConfig.from_dict(run_config.get("train", {}))


def dataset_root(run_config: dict) -> Path | None:
    data = run_config.get("data") or {}
    root = next((data[k] for k in ("root", "path", "data") if isinstance(data.get(k), str)), None)
    return Path(root) if root else None


def open_run_data(run_config: dict, root: Path | None = None, category: str | None = None) -> RunData | None:
    """The RUN's dataset (or `root`), split as training split it; None when it is not reachable here."""

    root = root or dataset_root(run_config)
    if root is None or not Path(root).is_dir():
        return None
    try:
        cats = open_dataset(Path(root), category)
    except Exception as e:  # a moved or reorganised dataset must not stop the export: the caller falls back
        log.info("dataset %s not usable (%s)", root, e)
        return None
    cfg = _train_config(run_config)
    cat = cats[0]
    train, val = split_validation(cat, cfg.val_fraction, cfg.seed)
    return RunData(Path(root), cat, train, val, cfg.seed, cfg.preset or cat.name)


def threshold_data(run_config: dict, training: RunData | None = None) -> RunData | None:
    """The images the RUN's threshold came from: `slsg threshold`'s data when it recorded one, else training's
    (`training`, when the caller has opened it already)."""
    source = (run_config.get("threshold") or {}).get("data") or {}
    if source.get("root"):
        return open_run_data(run_config, Path(source["root"]), source.get("category"))
    return training if training is not None else open_run_data(run_config)


def load_samples(samples: list, size, limit: int | None = None, seed: int = 0) -> np.ndarray | None:
    """Up to `limit` samples (a seeded choice, in dataset order) prepared at `size`; None when there are none."""

    if not samples:
        return None
    picked = samples
    if limit is not None and len(samples) > limit:
        keep = sorted(np.random.default_rng(seed).permutation(len(samples))[:limit])
        picked = [samples[i] for i in keep]
    images, _ = load_images(picked, size)
    return np.stack(images) if images else None


def synthetic_anomalies(good: np.ndarray, preset: str, n: int, seed: int) -> np.ndarray:
    """`n` anomalies made from `good` by the training recipe (`SynthesisDataset.draw`, seeded): what the
    model was trained to flag, for when the user has no real anomalies."""

    h, w = good.shape[1:3]
    dataset = SynthesisDataset(list(good), preset, h if h == w else (h, w), seed=seed + 7919,
                               color_jitter=(0.0, 0.0))
    return np.stack([dataset.draw(k)[1] for k in range(n)])


def gate_anomalies(data: RunData, good: np.ndarray, size, limit: int) -> tuple[np.ndarray, str]:
    """The gate's anomalies and where they come from: the user's test anomalies when the dataset has them,
    else training-recipe anomalies made from the gate's good images."""
    found = data.test_anomalies
    if found:
        images = load_samples(found, size, limit, data.seed)
        if images is not None:
            kinds = sorted({s.label for s in found})
            return images, (f"test anomalies: {len(images)} of {len(found)} images under {data.category.root}/test "
                            f"({', '.join(kinds)})")
    n = min(limit, max(len(good), 8))
    images = synthetic_anomalies(good, data.preset, n, data.seed)
    return images, (f"synthetic: {n} anomalies made by the training recipe (preset {data.preset!r}) from the "
                    "gate's good validation images — the dataset has no test anomalies")
