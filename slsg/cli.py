"""`slsg`: the training-side CLI. A thin Typer layer; each command lives in `slsg/commands/<name>.py`
as a function named `command`, and keeps heavy imports (torch) inside its body so `--help` is instant."""

from __future__ import annotations

import typer

from edge_runtime.commands import register

app = typer.Typer(
    name="slsg",
    help="Train SLSG on good images, evaluate it, export it for the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: command name → module holding `command`
COMMANDS = {
    "demo": "slsg.commands.demo",
    "synth": "slsg.commands.synth",
    "info": "slsg.commands.info",
    "import-official": "slsg.commands.import_official",
    "pretrain": "slsg.commands.pretrain",
    "train": "slsg.commands.train",
    "calibrate": "slsg.commands.calibrate",
    "evaluate": "slsg.commands.evaluate",
    "predict": "slsg.commands.predict",
    "export": "slsg.commands.export",
    "bench": "slsg.commands.bench",
}

register(app, COMMANDS)
