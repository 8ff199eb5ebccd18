"""The heads of a trained RUN fitted again on its own data, no retraining: `slsg fit-head`, and the accuracy
benchmark's `--refit` (a RUN trained by older code, scored by this code's heads)."""

from __future__ import annotations

from pathlib import Path

from slsg.checkpoint import load_run, save_run
from slsg.heads.global_context import head_config_for
from slsg.heads.scoring import fit_scores
from slsg.training.config import TrainConfig
from slsg.training.data import load_training_data


def refit_heads(run: Path, data: Path, category: str | None = None, head: str | None = None,
                false_reject_rate: float | None = None, rule: str | None = None, grid: int | None = None) -> dict:
    """Fit the RUN's heads on its training images, normalise them and set its threshold on its validation and
    cross-fitted training images (never test images); the RUN's config as saved. Each choice left None is the
    RUN's own, and the choices made are recorded in its `train` section."""
    r, model = load_run(run)
    cfg = TrainConfig.from_dict(r.config.get("train", {}))
    td = load_training_data(data, category or r.config.get("data", {}).get("category"), r.model_config.hw,
                            cfg.val_fraction, cfg.seed)
    head = cfg.head if head is None else head
    frr = cfg.false_reject_rate if false_reject_rate is None else false_reject_rate
    rule = rule or cfg.fusion_rule
    grid = cfg.global_grid if grid is None else grid
    config = dict(r.config)
    config.update(fit_scores(run, model, td, head, rule, frr, head_config_for(cfg.encoder_weights, grid)))
    config["train"] = {**config.get("train", {}), "head": head, "false_reject_rate": frr, "fusion_rule": rule,
                       "global_grid": grid}
    save_run(run, model, config)
    return config
