"""After training: fit the global head on the training images, normalise every head on the validation images,
and set the threshold on the decision score — all from good images, never from test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.scoring import threshold_from_good_scores
from slsg.heads.fit import fit_global_head
from slsg.heads.fusion import FusionConfig, HeadNorm, fuse_numpy, heads_for
from slsg.heads.global_context import GlobalContextHead, GlobalHeadConfig, load_head, save_head
from slsg.model import SLSGNet


def fit_scores(run: Path, model: SLSGNet, td, head: str = "both", rule: str = "mean",
               false_reject_rate: float = 0.01, head_cfg: GlobalHeadConfig | None = None,
               refit: bool = True) -> dict:
    """Config entries for the RUN: `head`, `scores` (the fusion) and `threshold`, plus `global_head` (fit report).

    `td` is the RUN's `TrainingData`: the global head is fitted on `td.train_images` (the images SLSG trained on),
    the heads are normalised and the threshold set on `td.val_samples` (held out of both). `refit=False` keeps a
    head already fitted in the RUN.
    """
    from slsg.evaluation import score_samples
    from slsg.inference import DeployModel, TorchPredictor

    heads = heads_for(head)
    config: dict = {"head": head}
    global_head: GlobalContextHead | None = None
    if "global" in heads:
        global_head = None if refit else load_head(run)
        if global_head is None:
            global_head, report = fit_global_head(model, td.train_images, head_cfg)
            save_head(global_head, run, report)
            config["global_head"] = report.to_dict()
    else:
        _remove_head(run)
    val, source = td.val_samples, "validation"
    if not val:
        val, source = td.train_samples, "train (no validation images: threshold and normalisation are optimistic)"
    device = next(model.parameters()).device
    raw = score_samples(TorchPredictor(DeployModel(model, global_head), device), val, model.cfg.hw) if val else None
    if raw is None or len(raw) < 2:
        config["scores"] = FusionConfig(heads if len(heads) == 1 else ("slsg",), rule).to_dict()
        return config
    norms = {h: HeadNorm.from_good_scores(raw.heads[h]) for h in heads} if len(heads) > 1 else {}
    fusion = FusionConfig(heads, rule, norms)
    config["scores"] = {**fusion.to_dict(), "source": source}
    fused = fuse_numpy(fusion, raw.heads)
    t = threshold_from_good_scores(fused, false_reject_rate)
    config["threshold"] = {**t.to_dict(), "source": source}
    config["good_scores"] = {h: _summary(v) for h, v in raw.heads.items()}
    return config


def _summary(scores: np.ndarray) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    return {"n": int(s.size), "median": float(np.median(s)), "max": float(s.max())}


def _remove_head(run: Path) -> None:
    """A RUN whose decision score has no global head keeps no stale head files (export reads what is there)."""
    from slsg.heads.global_context import HEAD_CONFIG, HEAD_FILE

    for name in (HEAD_FILE, HEAD_CONFIG):
        (Path(run) / name).unlink(missing_ok=True)
