"""`slsg fit-head`: (re-)fit the global-context head of a trained RUN and re-set its decision score and threshold.

For RUNs made before the head existed, imported official weights, or to switch `--head` without retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slsg.commands._common import console, user_errors
from slsg.training.refit import refit_heads


def command(
    run: Path = typer.Argument(..., help="RUN folder (made by `slsg train` or `slsg import-official`)"),
    data: Path = typer.Argument(..., help="the dataset it was trained on (root or category folder)"),
    category: Optional[str] = typer.Option(None, help="category under DATA"),
    head: str = typer.Option("all", help="heads of the decision score: all | both (slsg+global) | slsg | global | "
                             "local | heads joined by commas"),
    false_reject_rate: Optional[float] = typer.Option(None, help="default: the RUN's own"),
    rule: Optional[str] = typer.Option(None, help="fusion rule: max | mean (default: the RUN's own)"),
    global_grid: Optional[str] = typer.Option(None, help="the global head's grid of f4's cells: auto (4×4 on a "
                                              "surface, none on an object) | N (N×N; 0: none); default: the RUN's own"),
) -> None:
    """Fit the global head on the RUN's training images; normalise the heads and set the threshold on its
    validation images and cross-fitted training images (never test images)."""
    with user_errors():
        config = refit_heads(run, data, category, head, false_reject_rate, rule, global_grid)
        t = config.get("threshold", {})
        console.print(f"{run}: decision score {config['scores']['heads']} ({config['scores']['rule']}), threshold "
                      f"{t.get('value', float('nan')):.4f} on {t.get('n_good', 0)} good images ({t.get('source', '')})")
