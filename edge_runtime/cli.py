"""`slsg-edge`: the lean runtime CLI (no torch). Each command lives in `edge_runtime/commands/<name>.py`
as a function named `command`."""

from __future__ import annotations

import typer

from edge_runtime.commands import register

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
    "threshold": "edge_runtime.commands.threshold",
    "refit": "edge_runtime.commands.refit",
    "rollback": "edge_runtime.commands.rollback",
    "versions": "edge_runtime.commands.versions",
}
#: old command name → new one (the old name still runs, and says the new one)
RENAMED = {"calibrate": "threshold"}

register(app, COMMANDS, RENAMED)
