"""One module per `slsg-edge` command; see `edge_runtime.cli`. `register` is shared with the `slsg` CLI."""

from __future__ import annotations

import importlib
import importlib.util

import typer


def register(app: typer.Typer, commands: dict[str, str]) -> None:
    """Add each installed `<module>.command` under its name; heavy imports stay inside the commands."""
    for name, module in commands.items():
        if importlib.util.find_spec(module) is not None:
            app.command(name)(importlib.import_module(module).command)
