"""What every `slsg` command shares: one console, and turning known errors into a message + exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from edge_runtime.commands import EXIT_ERROR, print_error

console = Console(stderr=False)
err_console = Console(stderr=True)

#: errors of argument checks and missing files; a `SlsgError` is reported where every command is registered
ARGUMENT_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """A bad argument or a missing file prints `error: …` and exits 2, without a traceback."""
    try:
        yield
    except (*ARGUMENT_ERRORS, *extra) as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None
