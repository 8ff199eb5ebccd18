"""scripts/pip-quiet.sh (used by setup.sh): pip's known noise is dropped, everything else is shown, and pip's exit
status is the script's, so the main job's output starts with our first line and a failed install still fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pip-quiet.sh"

NOISE = """WARNING: Location 'file:///opt/pypi-more/simple/pip/' is ignored: it is neither a file nor a directory.
  /tmp/pip-build-env-x/overlay/setuptools/command/editable_wheel.py:354: BuildBackendWarning: Editable installation.
  !!

          ********************************************************************************
          Please be careful with folders in your working directory with the same
          name as your package as they may take precedence during imports.
          ********************************************************************************

  !!
    with strategy, WheelFile(wheel_path, "w") as wheel_obj:
[notice] A new release of pip is available: 23.2.1 -> 26.0
"""
REAL = """ERROR: Could not find a version that satisfies the requirement nothing==1.0 (from versions: none)
ERROR: No matching distribution found for nothing==1.0
"""


def _fake_python(tmp_path: Path, output: str, status: int) -> Path:
    (tmp_path / "out.txt").write_text(output)
    fake = tmp_path / "python"
    fake.write_text(f"#!/usr/bin/env bash\ncat '{tmp_path / 'out.txt'}' >&2\nexit {status}\n")
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize(("output", "status", "shown"), [
    (NOISE, 0, ""),
    (NOISE + REAL, 1, REAL),
    ("WARNING: something pip means\n" + NOISE, 0, "WARNING: something pip means\n"),
])
def test_pip_noise_is_dropped_and_errors_are_kept_and_fail(tmp_path, output, status, shown):
    fake = _fake_python(tmp_path, output, status)
    done = subprocess.run(["bash", str(SCRIPT), "-e", "."], env={"PY": str(fake), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == status
    assert done.stdout == "" and done.stderr == shown
