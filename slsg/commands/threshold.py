"""`slsg threshold RUN DATA`: a RUN's threshold from good images, no retraining (e.g. after import-official)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from export.onnx_export import deploy_for_run
from slsg.commands._common import console, err_console, user_errors
from slsg.rethreshold import rethreshold_run


def command(
    run: Path = typer.Argument(..., help="RUN folder (from `slsg train` or `slsg import-official`)"),
    data: Path = typer.Argument(..., help="dataset root (with --category) or a category folder"),
    category: Optional[str] = typer.Option(None, help="category folder under DATA"),
    false_reject_rate: Optional[float] = typer.Option(
        None, help="share of good images flagged NG (default: the RUN's own rate, else 0.01)"),
    all_good: bool = typer.Option(False, "--all-good",
                                  help="use every good image of DATA (images the model never trained on), "
                                       "not only its validation split"),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
) -> None:
    """Score DATA's good validation images with the RUN's model and set its threshold (old value kept)."""
    with user_errors():
        if false_reject_rate is not None and not 0.0 < false_reject_rate < 1.0:
            raise ValueError(f"--false-reject-rate must be in (0, 1), got {false_reject_rate}")

        deploy = deploy_for_run(run).to(device)
        result = rethreshold_run(run, deploy, data, category, false_reject_rate, all_good)
    old = f"{result.old.value:.4f}" if result.old else "none"
    console.print(f"threshold of [bold]{run}[/]: {old} → {result.new.value:.4f} for a "
                  f"{result.new.false_reject_rate:.1%} false-reject rate on {result.n_good} good "
                  f"{result.data['split']} images of {result.data['root']}")
    if result.warning:
        err_console.print(f"[yellow]warning:[/] {result.warning}")
