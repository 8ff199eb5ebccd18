"""INT8 through NVIDIA ModelOpt's ONNX PTQ, run in its own interpreter.

`nvidia-modelopt[onnx]` replaces onnxruntime with onnxruntime-gpu, pulls cupy and a CUDA torch, and pins
another onnx: installed beside slsg it would break the project's own stack. So it lives in a dedicated venv
and is driven through its command line; only files cross the boundary (a copy of the model — ModelOpt
rewrites its input — and the calibration tensors as .npz keyed by the input name).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx

from calibration.float_regions import find_float_regions, name_nodes
from calibration.int8 import TRT, QuantizationError, flavour_exclusions
from calibration.selection import CalibrationSet

ENV_VAR = "SLSG_MODELOPT_PYTHON"
INSTALL_HINT = "python -m venv ~/.slsg-modelopt && ~/.slsg-modelopt/bin/pip install 'nvidia-modelopt[onnx]'"
#: ModelOpt's INT8 calibration methods (its `--calibration_method`).
METHODS = ("entropy", "max")
#: Our `Int8Config.method` names → ModelOpt's; percentile has no ModelOpt counterpart.
FROM_ORT_METHOD = {"minmax": "max", "entropy": "entropy"}
STDERR_TAIL = 3000
TIMEOUT_S = 3600.0


class ModelOptError(QuantizationError):
    """ModelOpt is not configured or did not produce a model; the message says what to do."""


def resolve_python(python: str | Path | None = None) -> Path:
    """The isolated interpreter: the argument, else `$SLSG_MODELOPT_PYTHON`; refuses anything not runnable."""
    chosen = python or os.environ.get(ENV_VAR)
    if not chosen:
        raise ModelOptError(f"--int8-backend modelopt needs the python of a separate ModelOpt venv: pass "
                            f"--modelopt-python PATH or set {ENV_VAR}. Install it (never into slsg's own "
                            f"venv) with: {INSTALL_HINT}")
    path = Path(chosen).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ModelOptError(f"ModelOpt python {path} is not an executable file (from --modelopt-python or "
                            f"{ENV_VAR}); create it with: {INSTALL_HINT}")
    return path


def exclude_patterns(node_names: list[str]) -> list[str]:
    """ModelOpt reads `--nodes_to_exclude` as regular expressions: anchor and escape each exact name."""
    return [f"^{re.escape(name)}$" for name in node_names]


def modelopt_command(python: Path, onnx_path: Path, calib_npz: Path, out_onnx: Path, method: str = "entropy",
                     exclude_nodes: list[str] | None = None) -> list[str]:
    """The argv that runs ModelOpt's INT8 PTQ on the CPU (calibration in ORT's CPU provider).

    `--high_precision_dtype=fp32`: ModelOpt ≥ 0.4x otherwise turns every unquantised tensor into fp16,
    float regions included — the gate, the sensitivity probe and the contract all expect float32 there.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ModelOpt calibration method {method!r}; choose one of {', '.join(METHODS)}")
    argv = [str(python), "-m", "modelopt.onnx.quantization", f"--onnx_path={onnx_path}",
            "--quantize_mode=int8", f"--calibration_data_path={calib_npz}", f"--calibration_method={method}",
            f"--output_path={out_onnx}", "--high_precision_dtype=fp32", "--calibration_eps", "cpu"]
    if exclude_nodes:
        argv += ["--nodes_to_exclude", *exclude_patterns(exclude_nodes)]
    return argv


def write_calibration_npz(tensors: np.ndarray, input_name: str, path: Path) -> Path:
    """Calibration tensors as ModelOpt loads them: an .npz keyed by the model's input name, dtype kept."""
    np.savez(path, **{input_name: np.ascontiguousarray(tensors)})
    return path


def _isolated_env() -> dict[str, str]:
    """The child must see its own venv only, never slsg's (PYTHONPATH/VIRTUAL_ENV would leak it in)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


def quantize_with_modelopt(fp32_onnx: Path, calib: CalibrationSet, out_onnx: Path,
                           python: str | Path | None = None, method: str = "entropy",
                           exclude_nodes: list[str] | None = None, timeout_s: float = TIMEOUT_S) -> Path:
    """Write ModelOpt's INT8 Q/DQ model of `fp32_onnx` to `out_onnx`; the input file is never touched.

    `exclude_nodes=None` keeps the structurally found float regions (pre-processing, graph-attention
    block, scoring head) in float, as the ORT path does; pass a list to choose them yourself.
    """
    exe = resolve_python(python)
    out_onnx = Path(out_onnx).resolve()
    with tempfile.TemporaryDirectory(prefix="slsg-modelopt-") as tmp:
        work = Path(tmp)
        model = name_nodes(onnx.load(str(fp32_onnx)))
        copy = work / "model.onnx"
        onnx.save(model, str(copy))
        if exclude_nodes is None:
            exclude_nodes = flavour_exclusions(find_float_regions(model))[TRT]
        npz = write_calibration_npz(calib.tensors, model.graph.input[0].name, work / "calib.npz")
        produced = work / "model.int8-s8.onnx"
        argv = modelopt_command(exe, copy, npz, produced, method, exclude_nodes)
        try:
            done = subprocess.run(argv, cwd=work, env=_isolated_env(), capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ModelOptError(f"ModelOpt did not finish within {timeout_s:.0f} s") from None
        if done.returncode != 0 or not produced.is_file():
            tail = (done.stderr or done.stdout or "")[-STDERR_TAIL:].strip()
            raise ModelOptError(f"ModelOpt failed (exit {done.returncode}, {'no' if not produced.is_file() else 'an'}"
                                f" output model) running {' '.join(argv[:3])}; its last output:\n{tail}")
        out_onnx.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), out_onnx)
    return out_onnx
