"""What every step loop shares: a rich progress bar with ETA, and a step log that survives resuming."""

from __future__ import annotations

import json
from pathlib import Path


def step_progress(label: str, *fields: str, enabled: bool = True):
    """A progress bar `label ━━ n/N <fields…> elapsed ETA`; fields are rich format strings on task fields."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), *map(TextColumn, fields),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


def trim_log(path: Path, upto: int) -> None:
    """On resume, drop log lines written after the state being resumed (they will be written again)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= upto]
        path.write_text("".join(ln + "\n" for ln in lines))
