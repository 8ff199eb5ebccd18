"""What every `slsg` command shares: one console, and turning known errors into a message + exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=False)
err_console = Console(stderr=True)


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Known failures print `error: …` and exit 2, without a traceback."""
    from slsg.errors import known_errors

    try:
        yield
    except (*known_errors(), *extra) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
