"""`slsg-edge versions BUNDLE`: the line's bundle versions and its audit log."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edge_runtime.teach.store import DEFECT, GOOD, LineStore


def command(
    bundle: Path = typer.Argument(..., help="The model.slsg/ folder the line runs."),
    audit: int = typer.Option(10, "--audit", help="Show this many of the newest audit lines."),
) -> None:
    """Which versions exist, which one runs, what was reviewed, and who did what."""
    store = LineStore(bundle)
    console = Console()
    table = Table(title=f"versions of {store.original} (reviews: {len(store.confirmed(GOOD))} good, "
                        f"{len(store.confirmed(DEFECT))} defect)")
    for col in ("version", "made", "by", "why", "folder"):
        table.add_column(col)
    current = store.current
    for v in store.versions():
        mark = " (runs)" if v.number == current else ""
        table.add_row(f"{v.number}{mark}", str(v.lineage.get("made", "")), str(v.lineage.get("by", "")),
                      str(v.lineage.get("why", "")), str(v.path))
    console.print(table)
    for line in store.audit_log(audit):
        console.print(line, highlight=False)
