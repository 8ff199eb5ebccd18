"""`slsg-edge rollback BUNDLE`: back to the version the line ran before."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from edge_runtime.teach.store import LineStore


def command(
    bundle: Path = typer.Argument(..., help="The model.slsg/ folder the line runs."),
    who: Optional[str] = typer.Option(None, "--who", help="Name for the audit log (default: the login name)."),
    to: Optional[int] = typer.Option(None, "--to", help="Switch to this version instead (see `slsg-edge versions`)."),
) -> None:
    """Switch the line back (a running `slsg-edge run` follows within a second); the version left stays on disk."""
    store = LineStore(bundle)
    name = who or getpass.getuser()
    if to is None:
        store.rollback(name)
    else:
        store.switch(to, name)
    Console().print(f"the line now runs version {store.current} ({store.version_path(store.current)})")
