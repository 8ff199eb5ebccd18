"""`slsg`: the training-side CLI. A thin Typer layer; each command lives in `slsg/commands/<name>.py`
as a function named `command`, and keeps heavy imports (torch) inside its body so `--help` is instant."""

from __future__ import annotations

import sys

if sys.version_info < (3, 10):  # noqa: UP036 — typer evaluates `X | None` in the command signatures
    raise SystemExit("slsg (training, export) needs Python >= 3.10; this Python runs the runtime only: slsg-edge")

import typer  # noqa: E402

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
    "fit-head": "slsg.commands.fit_head",
    "threshold": "slsg.commands.threshold",
    "evaluate": "slsg.commands.evaluate",
    "predict": "slsg.commands.predict",
    "export": "slsg.commands.export",
    "bench": "slsg.commands.bench",
}

#: old command name → new one (the old name still runs, and says the new one)
RENAMED = {"calibrate": "threshold"}

register(app, COMMANDS, RENAMED)
