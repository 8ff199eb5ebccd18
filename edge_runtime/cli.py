"""`slsg-edge`: the lean runtime CLI (no torch). Each command lives in `edge_runtime/commands/<name>.py`
as a function named `command`."""

from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(
    name="slsg-edge",
    help="Judge camera frames with an exported SLSG bundle: OK or NG, with a heatmap.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMANDS = {
    "info": "edge_runtime.commands.info",
    "build": "edge_runtime.commands.build",
    "run": "edge_runtime.commands.run",
    "bench": "edge_runtime.commands.bench",
}

for _name, _module in COMMANDS.items():
    if importlib.util.find_spec(_module) is not None:
        app.command(_name)(importlib.import_module(_module).command)
