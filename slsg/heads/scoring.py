"""After training: fit the global head on the training images, normalise every head and set the threshold on the
decision score from good images only — never from test data.

The good reference for a head is every good score it has that a new image would get: the validation images
(held out of training and of the fit) and, for the global head, each training image's cross-fitted distance.
Each head is normalised on its own reference; the threshold is the (1 − FRR) quantile of the decision score over
the validation images and the training images (whose SLSG score comes from the network they trained). A few
dozen validation images alone put a 1 % quantile at their maximum (docs/global_head.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.scoring import threshold_from_good_scores
from slsg.heads.fit import fit_global_head
from slsg.heads.fusion import FusionConfig, HeadNorm, fuse_numpy, heads_for
from slsg.heads.global_context import CROSS_FIT_FOLDS, GlobalContextHead, GlobalHeadConfig, save_head
from slsg.model import SLSGNet

#: Heads whose scores on training images count as out-of-sample good scores (cross-fitted) for normalising.
CROSS_FITTED = ("global",)


def fit_scores(run: Path, model: SLSGNet, td, head: str = "both", rule: str = "max",
               false_reject_rate: float = 0.01, head_cfg: GlobalHeadConfig | None = None) -> dict:
    """Config entries for the RUN: `head`, `scores` (the fusion) and `threshold`, plus `global_head` (fit report).

    `td` is the RUN's `TrainingData`: the global head is fitted on `td.train_images` (the images SLSG trained on);
    `td.val_samples` are held out of both.
    """
    from slsg.evaluation import score_samples
    from slsg.inference import DeployModel, TorchPredictor

    heads = heads_for(head)
    config: dict = {"head": head}
    global_head: GlobalContextHead | None = None
    train_scores: dict[str, np.ndarray] = {}
    if "global" in heads:
        fitted = fit_global_head(model, td.train_images, head_cfg)
        global_head, train_scores = fitted.head, fitted.train_scores
        save_head(global_head, run, fitted.report)
        config["global_head"] = fitted.report.to_dict()
    else:
        _remove_head(run)
    val, source = td.val_samples, f"{len(td.val_samples)} validation images"
    if not val and not train_scores:
        val, source = td.train_samples, "train (no validation images: threshold and normalisation are optimistic)"
    elif not val:
        source = "no validation images (heads without cross-fitted scores normalised in-sample: optimistic)"
    device = next(model.parameters()).device
    predictor = TorchPredictor(DeployModel(model, global_head), device)
    val_scores = score_samples(predictor, val, model.cfg.hw).heads if val else {}
    reference = good_reference(val_scores, train_scores, heads)
    if min(len(v) for v in reference.values()) < 2:
        config["scores"] = FusionConfig(heads if len(heads) == 1 else ("slsg",), rule).to_dict()
        return config
    if train_scores:
        n_train = len(train_scores["global"])
        source += f" + {n_train} training images (global head cross-fitted, {CROSS_FIT_FOLDS} folds)"
    norms = {h: HeadNorm.from_good_scores(reference[h]) for h in heads} if len(heads) > 1 else {}
    fusion = FusionConfig(heads, rule, norms)
    config["scores"] = {**fusion.to_dict(), "source": source}
    decision = np.concatenate([fuse_numpy(fusion, part) for part in (val_scores, train_scores) if part])
    t = threshold_from_good_scores(decision, false_reject_rate)
    config["threshold"] = {**t.to_dict(), "source": source}
    config["good_scores"] = {h: _summary(v) for h, v in (val_scores or train_scores).items()}
    return config


def good_reference(val: dict[str, np.ndarray], train: dict[str, np.ndarray],
                   heads: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each head's out-of-sample good scores: validation images, plus cross-fitted training images (and, with
    no validation images at all, the in-sample ones: better than none, and the RUN's `source` says so)."""
    out = {}
    for h in heads:
        parts = [val[h]] if h in val else []
        if h in train and (h in CROSS_FITTED or not val):
            parts.append(train[h])
        out[h] = np.concatenate([np.asarray(p, np.float64) for p in parts]) if parts else np.zeros(0)
    return out


def _summary(scores: np.ndarray) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    return {"n": int(s.size), "median": float(np.median(s)), "max": float(s.max())}


def _remove_head(run: Path) -> None:
    """A RUN whose decision score has no global head keeps no stale head files (export reads what is there)."""
    from slsg.heads.global_context import HEAD_CONFIG, HEAD_FILE

    for name in (HEAD_FILE, HEAD_CONFIG):
        (Path(run) / name).unlink(missing_ok=True)
