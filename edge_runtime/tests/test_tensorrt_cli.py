"""`slsg-edge build` where TensorRT is absent: a clear message, exit code 2, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_runtime.cli import app
from edge_runtime.tensorrt import tensorrt_available

pytestmark = pytest.mark.skipif(tensorrt_available(), reason="checks behaviour on a machine without TensorRT")


def test_build_without_tensorrt_exits_2_with_the_install_hint(tmp_path):
    result = CliRunner().invoke(app, ["build", str(tmp_path), "--int8"])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "TensorRT is not available" in result.output
    assert "sudo apt install python3-libnvinfer" in result.output
    assert "pip install 'slsg[tensorrt]'" in result.output     # rich markup must not eat [tensorrt]


def test_build_without_tensorrt_prints_no_traceback_in_a_real_process(tmp_path):
    code = ("import sys; from edge_runtime.cli import app; "
            "sys.argv = ['slsg-edge', 'build', sys.argv[1]]; app()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error: TensorRT is not available" in proc.stderr


def test_missing_bundle_folder_is_reported_before_tensorrt(tmp_path):
    result = CliRunner().invoke(app, ["build", str(tmp_path / "nope.slsg")])
    assert result.exit_code == 1 and "is not a bundle folder" in result.output


def test_two_precisions_at_once_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["build", str(tmp_path), "--fp16", "--int8"])
    assert result.exit_code == 2 and "choose one precision" in result.output


def test_trt_check_script_without_tensorrt_exits_2_with_the_same_message(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "trt_check.sh"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(script), str(tmp_path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "error: TensorRT is not available" in proc.stderr and "Traceback" not in proc.stderr
