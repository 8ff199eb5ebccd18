"""`slsg-edge threshold BUNDLE --good DIR_OR_VIDEO`: thresholds from good frames on the line, torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional  # noqa: UP035 — Typer evaluates these at run time on Python 3.8

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_runtime.bundle import load_bundle
from edge_runtime.rethreshold import read_good_frames, rethreshold


def command(
    bundle: Path = typer.Argument(..., help="The model.slsg/ folder made by `slsg export`."),
    good: Path = typer.Option(..., "--good", help="A folder of good images or a video of good parts."),
    false_reject_rate: Optional[float] = typer.Option(
        None, "--false-reject-rate", help="Share of good parts allowed NG (default: the bundle's own rate)."
    ),
    backend: List[str] = typer.Option(  # noqa: UP006
        ["auto"], "--backend",
        help="Backend(s) to calibrate, as `slsg-edge run --backend` names them (repeatable); 'all' = every "
             "model file of the bundle, and each INT8 file as OpenVINO was gated to run it.",
    ),
    every: int = typer.Option(1, "--every", min=1, help="Use every N-th frame (videos: neighbours look alike)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads."),
) -> None:
    """Score good frames with the bundle's own backend and write new thresholds into the bundle (re-hashed
    manifest; the old values are kept in `threshold_history`). Exit 2 with the reason when nothing changed."""


    console, err = Console(), Console(stderr=True, soft_wrap=True)
    try:
        if false_reject_rate is not None and not 0.0 < false_reject_rate < 1.0:
            raise ValueError(f"--false-reject-rate must be in (0, 1), got {false_reject_rate}")
        size = load_bundle(bundle).size
        frames = read_good_frames(good, size, every, max_frames)
        results = rethreshold(bundle, frames, false_reject_rate, list(backend), threads)
    except (FileNotFoundError, ValueError) as e:  # a SlsgError (bundle, backend, source) is reported by the CLI
        err.print(Text("error: ", style="red") + Text(str(e)))
        raise typer.Exit(2) from None
    table = Table(title=f"new thresholds in {bundle} ({frames.source})")
    for col in ("model", "backend", "old", "new", "false-reject rate", "good frames"):
        table.add_column(col, justify="left" if col in ("model", "backend") else "right")
    for r in results:
        table.add_row(r.model, r.backend, f"{r.old.value:.5g}", f"{r.new.value:.5g}", f"{r.new.false_reject_rate:g}",
                      str(r.n_frames))
    console.print(table)
    for line in frames.dropped[:10]:
        err.print(Text("skipped: ", style="yellow") + Text(line))
    for r in results:
        if r.warning:
            err.print(Text("warning: ", style="yellow") + Text(r.warning))
