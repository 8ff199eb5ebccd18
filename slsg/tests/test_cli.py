"""Every command the design promises is installed and answers --help (no silent gaps in the CLIs)."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

import edge_runtime.cli as edge_cli
import slsg.cli as slsg_cli


@pytest.mark.parametrize("cli", [slsg_cli, edge_cli], ids=["slsg", "slsg-edge"])
def test_every_listed_command_is_registered_and_helps(cli):
    for name, module in cli.COMMANDS.items():
        assert importlib.util.find_spec(module) is not None, f"{module} is missing"
        result = CliRunner().invoke(cli.app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
