"""What every step loop shares: progress with ETA that reaches a log, and a step log that survives resuming."""

from __future__ import annotations

import json
from pathlib import Path

from edge_runtime.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    RateColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def step_progress(label: str, *fields: str, enabled: bool = True):
    """Progress of a step loop: `label ━━ n/N <fields…> rate elapsed ETA` on a terminal; elsewhere (nohup,
    systemd, `> train.log`) a plain line at the start, every ~10 s and at the end (`edge_runtime.progress`).
    Fields are rich format strings on task fields, e.g. "loss {task.fields[loss]}" (pass the value
    formatted: before the first step there is none to show)."""

    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), *map(TextColumn, fields),
                    RateColumn("step"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    disable=not enabled, unit="step", line_fields=fields, announce=True)


def trim_log(path: Path, upto: int) -> None:
    """On resume, drop log lines written after the state being resumed (they will be written again)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= upto]
        path.write_text("".join(ln + "\n" for ln in lines))
