"""The heads of a trained RUN fitted again on its own data, no retraining: `slsg fit-head`, and the accuracy
benchmark's `--refit` (a RUN trained by older code, scored by this code's heads)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from slsg.checkpoint import load_run, save_run
from slsg.heads.global_context import AUTO_GRID, GlobalHeadConfig, head_config_for
from slsg.heads.scoring import fit_scores
from slsg.training.config import TrainConfig
from slsg.training.data import TrainingData, load_training_data, profile_of


def global_head_config(cfg: TrainConfig, product: dict | None, td: TrainingData,
                       hw: tuple[int, int]) -> GlobalHeadConfig:
    """The global head's pooling for this product. `--global-grid auto` asks whether the good images show a
    surface: the profile training saved (`product` in the RUN's config), or one made now where the reference's
    recipe made none."""
    if cfg.global_grid == AUTO_GRID and product is None:
        product = profile_of(td, hw, cfg.seed).to_dict()
    surface = product is not None and not product["object"]
    return head_config_for(cfg.encoder_weights, cfg.global_grid, surface)


def refit_heads(run: Path, data: Path, category: str | None = None, head: str | None = None,
                false_reject_rate: float | None = None, rule: str | None = None, grid: int | str | None = None) -> dict:
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
    if grid is not None:
        cfg = replace(cfg, global_grid=grid)
    config = dict(r.config)
    config.update(fit_scores(run, model, td, head, rule, frr,
                             global_head_config(cfg, r.config.get("product"), td, r.model_config.hw)))
    config["train"] = {**config.get("train", {}), "head": head, "false_reject_rate": frr, "fusion_rule": rule,
                       "global_grid": cfg.global_grid}
    save_run(run, model, config)
    return config
