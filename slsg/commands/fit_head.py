"""`slsg fit-head`: (re-)fit the global-context head of a trained RUN and re-set its decision score and threshold.

For RUNs made before the head existed, imported official weights, or to switch `--head` without retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slsg.checkpoint import load_run, save_run
from slsg.commands._common import console, user_errors
from slsg.heads.global_context import head_config_for
from slsg.heads.scoring import fit_scores
from slsg.training import TrainConfig
from slsg.training.data import load_training_data


def command(
    run: Path = typer.Argument(..., help="RUN folder (made by `slsg train` or `slsg import-official`)"),
    data: Path = typer.Argument(..., help="the dataset it was trained on (root or category folder)"),
    category: Optional[str] = typer.Option(None, help="category under DATA"),
    head: str = typer.Option("all", help="heads of the decision score: all | both (slsg+global) | slsg | global | "
                             "local | heads joined by commas"),
    false_reject_rate: Optional[float] = typer.Option(None, help="default: the RUN's own"),
    rule: Optional[str] = typer.Option(None, help="fusion rule: max | mean (default: the RUN's own)"),
    global_grid: Optional[int] = typer.Option(None, help="the global head also pools each cell of a N×N grid; 0: the "
                                              "whole image only (default: the RUN's own)"),
) -> None:
    """Fit the global head on the RUN's training images; normalise the heads and set the threshold on its
    validation images and cross-fitted training images (never test images)."""
    with user_errors():
        r, model = load_run(run)
        train_cfg = TrainConfig.from_dict(r.config.get("train", {}))
        td = load_training_data(data, category or r.config.get("data", {}).get("category"), r.model_config.hw,
                                train_cfg.val_fraction, train_cfg.seed)
        frr = train_cfg.false_reject_rate if false_reject_rate is None else false_reject_rate
        rule = rule or train_cfg.fusion_rule
        grid = train_cfg.global_grid if global_grid is None else global_grid
        config = dict(r.config)
        config.update(fit_scores(run, model, td, head, rule, frr, head_config_for(train_cfg.encoder_weights, grid)))
        config["train"] = {**config.get("train", {}), "head": head, "false_reject_rate": frr, "fusion_rule": rule,
                           "global_grid": grid}
        save_run(run, model, config)
        t = config.get("threshold", {})
        console.print(f"{run}: decision score {config['scores']['heads']} ({config['scores']['rule']}), threshold "
                      f"{t.get('value', float('nan')):.4f} on {t.get('n_good', 0)} good images ({t.get('source', '')})")
