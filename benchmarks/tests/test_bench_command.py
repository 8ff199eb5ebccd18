"""`slsg bench` turns bad input into a message and exit code 2, without a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from slsg.cli import app


def test_missing_target_is_a_clear_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["bench", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_bad_iterations_are_refused(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["bench", str(tmp_path), "--iterations", "0"])
    assert r.exit_code == 2 and "--iterations" in r.output
