"""One module per `slsg-edge` command; see `edge_runtime.cli`. `register` is shared with the `slsg` CLI."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import Callable

import typer
from rich.console import Console
from rich.markup import escape

from edge_runtime.errors import SlsgError

#: the exit status of a command stopped by a `SlsgError` it did not handle itself
EXIT_ERROR = 2


def print_error(message: str) -> None:
    """`error: <message>` on stderr, the message as written (a "[onnx]" in it is not markup)."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def reported(command: Callable) -> Callable:
    """The one place a CLI turns a `SlsgError` into `error: <what is wrong and what to do>` and exit 2.

    Commands that give some errors their own exit status catch those first; anything that is not a `SlsgError`
    is a bug and keeps its traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SlsgError as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_ERROR) from None

    return run


def renamed(command: Callable, old: str, new: str) -> Callable:
    """`old` still works: it says the command's new name on stderr, then runs it."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        Console(stderr=True).print(f"note: `{old}` is now `{new}`; the old name will go", highlight=False)
        return command(*args, **kwargs)

    return run


def register(app: typer.Typer, commands: dict[str, str], aliases: dict[str, str] | None = None) -> None:
    """Add each installed `<module>.command` under its name, and each old name in `aliases` (old → new) as a
    hidden command that says the new one; heavy imports stay inside the commands."""
    for name, module in commands.items():
        if importlib.util.find_spec(module) is not None:
            app.command(name)(reported(importlib.import_module(module).command))
    for old, new in (aliases or {}).items():
        module = commands[new]
        if importlib.util.find_spec(module) is not None:
            cli = app.info.name or "slsg"
            command = renamed(importlib.import_module(module).command, f"{cli} {old}", f"{cli} {new}")
            app.command(old, hidden=True)(reported(command))
