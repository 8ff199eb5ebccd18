"""`slsg-edge refit BUNDLE`: a new bundle version from the frames reviewed on the line, through the gate."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edge_runtime.teach.refit import refit
from edge_runtime.teach.store import LineStore

#: exit status of a refit the gate refused (nothing changed)
EXIT_REFUSED = 3


def command(
    bundle: Path = typer.Argument(..., help="The model.slsg/ folder the line runs (its reviews are beside it)."),
    who: Optional[str] = typer.Option(None, "--who", help="Name for the audit log (default: the login name)."),
    keep: bool = typer.Option(False, "--keep", help="Make the new version but do not switch the line to it."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads of the backends."),
) -> None:
    """Refit on the confirmed-good and confirmed-defect frames in `BUNDLE.line/`; a version that passes the gate
    becomes the one the line runs (a running `slsg-edge run` switches to it). Exit 3 when the gate refuses."""
    store = LineStore(bundle)
    name = who or getpass.getuser()
    report = refit(store, name, threads)
    console = Console()
    table = Table(title=report.summary())
    for col in ("model", "backend", "threshold before", "after", "good flagged before", "after", "defects caught"):
        table.add_column(col, justify="left" if col in ("model", "backend") else "right")
    for m in report.models:
        table.add_row(m.model, m.backend, f"{m.old:.5g}", f"{m.new:.5g}", str(m.goods_flagged_before),
                      str(m.goods_flagged_after), f"{m.defects_caught_after}/{len(m.defect_after)}")
    console.print(table)
    for note in report.notes:
        Console(stderr=True).print(f"[yellow]note:[/] {note}", highlight=False)
    if not report.accepted:
        for reason in report.reasons:
            Console(stderr=True).print(f"[red]refused:[/] {reason}", highlight=False)
        raise typer.Exit(EXIT_REFUSED)
    if not keep:
        store.switch(report.version, name, action="switch after refit")
        console.print(f"the line now runs version {report.version} ({store.version_path(report.version)})")
