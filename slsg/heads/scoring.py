"""After training: fit the fitted heads on the training images, normalise every head and set the threshold on the
decision score from good images only — never from test data, and never from a score of an image the head has
already seen.

A head's good reference holds only scores a new good image would get:
- SLSG (trained on the training images): the validation images, which it never saw;
- a fitted head (global Gaussian, local patch memory): the validation images, scored by the fit on all training
  images, and every training image scored by a fit made without it (k folds, `slsg.heads.fit`).
Each head is normalised on its own reference. The threshold is the (1 − FRR) quantile of the decision score over
the validation images only, read from an exponential tail fitted to their highest scores
(`edge_runtime.scoring.tail_quantile`: a few dozen images hold no 1 % quantile of their own). The validation images
are the one set on which *every* head is out of sample (a training image's SLSG score comes from the network that
learnt it, so it says nothing of how a new good part scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.scoring import threshold_from_good_scores
from slsg.evaluation import score_samples
from slsg.heads.files import remove_head_files
from slsg.heads.fit import FITTED_HEADS, FittedHeads, fit_heads
from slsg.heads.folds import CROSS_FIT_FOLDS
from slsg.heads.fusion import FusionConfig, HeadNorm, fuse_numpy, heads_for
from slsg.heads.global_context import HEAD_CONFIG, HEAD_FILE, FitReport, GlobalHeadConfig, save_head
from slsg.heads.local_patch import LOCAL_CONFIG, LOCAL_FILE, LocalHeadConfig, save_local_head
from slsg.inference import DeployModel, TorchPredictor
from slsg.model import SLSGNet

#: Reference scores kept in the RUN per head (for the shift check of `slsg evaluate`), at this many digits.
_DIGITS = 6


@dataclass
class GoodReference:
    """Every head's out-of-sample good scores, and the decision scores of the validation images."""

    heads: dict[str, np.ndarray]
    decision: np.ndarray
    source: str

    def to_dict(self) -> dict:
        rounded = {h: [float(f"{v:.{_DIGITS}g}") for v in s] for h, s in self.heads.items()}
        return {"source": self.source, "heads": rounded,
                "score": [float(f"{v:.{_DIGITS}g}") for v in self.decision]}


def good_reference(val: dict[str, np.ndarray], cross_fitted: dict[str, np.ndarray],
                   heads: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each head's out-of-sample good scores: its validation scores, plus the cross-fitted training scores of a
    fitted head. A trained head's scores of its training images are never part of it."""
    out = {}
    for h in heads:
        parts = [val[h]] if h in val else []
        if h in FITTED_HEADS and h in cross_fitted:
            parts.append(cross_fitted[h])
        out[h] = np.concatenate([np.asarray(p, np.float64) for p in parts]) if parts else np.zeros(0)
    return out


def _save_heads(run: Path, fitted: FittedHeads) -> None:
    """The fitted heads' files in the RUN; a head not fitted leaves no stale file (export reads what is there)."""
    if fitted.global_head is not None:
        save_head(fitted.global_head, run, FitReport(**fitted.reports["global"]))
    else:
        remove_head_files(run, HEAD_FILE, HEAD_CONFIG)
    if fitted.local_head is not None:
        save_local_head(fitted.local_head, run, fitted.reports["local"])
    else:
        remove_head_files(run, LOCAL_FILE, LOCAL_CONFIG)


def fit_scores(run: Path, model: SLSGNet, td, head: str = "all", rule: str = "max",
               false_reject_rate: float = 0.01, head_cfg: GlobalHeadConfig | None = None,
               local_cfg: LocalHeadConfig | None = None) -> dict:
    """Config entries for the RUN: `head`, `scores` (the fusion), `threshold`, `good_reference`, and each fitted
    head's fit report (`global_head`, `local_head`).

    `td` is the RUN's `TrainingData`: the fitted heads are fitted on `td.train_images` (the images SLSG trained
    on); `td.val_samples` are held out of both.
    """

    heads = heads_for(head)
    config: dict = {"head": head}
    fitted = fit_heads(model, td.train_images, heads, head_cfg, local_cfg)
    _save_heads(Path(run), fitted)
    for name, report in fitted.reports.items():
        config[f"{name}_head"] = report
    val = td.val_samples
    device = next(model.parameters()).device
    predictor = TorchPredictor(DeployModel(model, fitted.global_head, None, fitted.local_head), device)
    val_scores = score_samples(predictor, val, model.cfg.hw).heads if val else {}
    reference = good_reference(val_scores, fitted.cross_fitted, heads)
    source = f"{len(val)} validation images"
    crossed = [h for h in heads if h in fitted.cross_fitted]
    if crossed:
        source += (f"; {' and '.join(crossed)} also on {len(td.train_images)} training images, cross-fitted "
                   f"({CROSS_FIT_FOLDS} folds)")
    if min(len(v) for v in reference.values()) < 2:
        config["scores"] = FusionConfig(heads if len(heads) == 1 else ("slsg",), rule).to_dict()
        return config
    norms = {h: HeadNorm.from_good_scores(reference[h]) for h in heads} if len(heads) > 1 else {}
    fusion = FusionConfig(heads, rule, norms)
    config["scores"] = {**fusion.to_dict(), "source": source}
    if val_scores:
        decision, t_source = fuse_numpy(fusion, val_scores), f"{len(val)} validation images"
    else:  # no validation image: only fitted heads have out-of-sample scores (their cross-fitted ones)
        decision = fuse_numpy(fusion, {h: fitted.cross_fitted[h] for h in heads})
        t_source = f"{len(decision)} training images, cross-fitted"
    t = threshold_from_good_scores(decision, false_reject_rate)
    config["threshold"] = {**t.to_dict(), "source": t_source}
    config["good_reference"] = GoodReference(reference, decision, source).to_dict()
    return config
