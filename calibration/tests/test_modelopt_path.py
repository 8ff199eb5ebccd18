"""The ModelOpt INT8 path: its command line, its errors, the subprocess round trip and the accuracy gate."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from calibration.accuracy import Outputs, compare
from calibration.bundle import quantize_bundle
from calibration.int8 import CPU, TRT, Int8Config
from calibration.modelopt_path import (
    ENV_VAR,
    INSTALL_HINT,
    ModelOptError,
    modelopt_command,
    quantize_with_modelopt,
    resolve_python,
)

#: A stand-in for the ModelOpt venv's python. It tests OUR plumbing only (argv, files in and out, the gate),
#: not ModelOpt: it records its argv and the calibration file, rewrites its input like ModelOpt does, and
#: writes the input model (optionally with every weight zeroed, i.e. a broken quantisation) to --output_path.
FAKE_MODELOPT = """#!{python}
import json, shutil, sys
import numpy as np
import onnx
args = dict(a[2:].split("=", 1) for a in sys.argv if a.startswith("--") and "=" in a)
calib = np.load(args["calibration_data_path"])
json.dump({{"argv": sys.argv, "calib": {{k: [str(v.dtype), list(v.shape)] for k, v in calib.items()}}}},
          open({record!r}, "w"))
model = onnx.load(args["onnx_path"])
if {broken!r}:
    weights = {{n.input[1] for n in model.graph.node if n.op_type == "Conv"}}
    for init in model.graph.initializer:
        if init.name in weights:
            arr = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(arr), init.name))
onnx.save(model, args["output_path"])
open(args["onnx_path"], "ab").write(b"rewritten")
"""


def fake_modelopt(folder: Path, broken: bool = False) -> tuple[Path, Path]:
    record = folder / "fake_modelopt_call.json"
    script = folder / ("fake_python_broken" if broken else "fake_python")
    script.write_text(FAKE_MODELOPT.format(python=sys.executable, record=str(record), broken=broken))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_command_line_runs_int8_ptq_on_cpu_with_anchored_exclusions(tmp_path):
    argv = modelopt_command(Path("/venv/bin/python"), tmp_path / "m.onnx", tmp_path / "c.npz",
                            tmp_path / "q.onnx", "max", ["/enc/Conv_1", "Softmax_7"])
    assert argv[:3] == ["/venv/bin/python", "-m", "modelopt.onnx.quantization"]
    assert f"--onnx_path={tmp_path / 'm.onnx'}" in argv and "--quantize_mode=int8" in argv
    assert f"--calibration_data_path={tmp_path / 'c.npz'}" in argv and "--calibration_method=max" in argv
    assert f"--output_path={tmp_path / 'q.onnx'}" in argv and "--high_precision_dtype=fp32" in argv
    assert argv[argv.index("--calibration_eps") + 1] == "cpu"
    assert argv[argv.index("--nodes_to_exclude") + 1:] == [r"^/enc/Conv_1$", "^Softmax_7$"]
    assert "--nodes_to_exclude" not in modelopt_command(Path("p"), Path("m"), Path("c"), Path("q"))
    with pytest.raises(ValueError, match="entropy, max"):
        modelopt_command(Path("p"), Path("m"), Path("c"), Path("q"), "percentile")


def test_missing_modelopt_python_names_the_option_the_env_var_and_the_install(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ModelOptError) as err:
        resolve_python(None)
    assert "--modelopt-python" in str(err.value) and ENV_VAR in str(err.value) and INSTALL_HINT in str(err.value)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(ModelOptError, match="not an executable file"):
        resolve_python(None)


def test_fake_modelopt_round_trip_sends_calibration_and_float_regions_and_spares_the_input(
        tiny_onnx, calib_set, tmp_path):
    python, record = fake_modelopt(tmp_path)
    before = sha256(tiny_onnx)
    out = quantize_with_modelopt(tiny_onnx, calib_set, tmp_path / "out" / "model.int8-s8.onnx", python, "entropy")
    assert out.is_file() and onnx.load(str(out)).graph.input[0].name == "image"
    assert sha256(tiny_onnx) == before  # ModelOpt rewrote its copy, not our file
    call = json.loads(record.read_text())
    assert call["calib"] == {"image": ["uint8", list(calib_set.tensors.shape)]}
    assert "--calibration_method=entropy" in call["argv"]
    excluded = call["argv"][call["argv"].index("--nodes_to_exclude") + 1:]
    assert excluded and all(p.startswith("^") and p.endswith("$") for p in excluded)


def test_modelopt_failure_reports_its_stderr_tail(calib_set, tiny_onnx, tmp_path):
    python = tmp_path / "failing_python"
    python.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('ModelOpt says: no uint8 here')\n"
                      "sys.exit(3)\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(ModelOptError, match=r"(?s)exit 3.*ModelOpt says: no uint8 here"):
        quantize_with_modelopt(tiny_onnx, calib_set, tmp_path / "q.onnx", python)
    assert not (tmp_path / "q.onnx").exists()


def test_modelopt_backend_makes_the_trt_flavour_and_faces_the_same_gate(tiny_onnx, calib_set, eval_data,
                                                                        tmp_path):
    python, record = fake_modelopt(tmp_path)
    cfg = Int8Config(method="minmax", progress=False, auroc_budget=0.03, auto_fallback=False,
                     backend="modelopt", modelopt_python=str(python))
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path / "ok", cfg, eval_data, measure_latency=False)
    assert report.passed, report.failure
    assert "--calibration_method=max" in json.loads(record.read_text())["argv"]
    assert report.flavours[TRT].accuracy.map_pearson > 0.999  # the fake hands back the float model
    assert sum(v for k, v in report.flavours[CPU].int8_ops.items() if k != "float_conv") > 0  # still ORT's
    assert "modelopt_python" not in json.loads((tmp_path / "ok/calibration/int8_config.json").read_text())

    broken, _ = fake_modelopt(tmp_path, broken=True)
    cfg.modelopt_python = str(broken)
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path / "bad", cfg, eval_data, measure_latency=False)
    assert report.kept == [CPU] and any(f.startswith(f"{TRT}:") for f in report.failure)
    assert not (tmp_path / "bad" / "model.int8-s8.onnx").exists()  # refused alone: ORT's flavour still ships


def test_percentile_is_refused_for_modelopt():
    with pytest.raises(ValueError, match="ModelOpt"):
        Int8Config(method="percentile", backend="modelopt")


@pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"real ModelOpt run needs {ENV_VAR} (its own venv)")
def test_real_modelopt_quantizes_the_tiny_model(tiny_onnx, calib_set, eval_data, tmp_path):
    cfg = Int8Config(method="entropy", progress=False, auroc_budget=0.03, auto_fallback=False,
                     backend="modelopt")
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path, cfg, eval_data, measure_latency=False)
    assert report.passed, report.failure
    model = onnx.load(str(tmp_path / "model.int8-s8.onnx"))
    assert "QuantizeLinear" in [n.op_type for n in model.graph.node], "ModelOpt returned a model without Q/DQ"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert all(init.data_type != onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert report.flavours[TRT].accuracy.map_pearson > 0.9


def test_gate_refuses_a_model_that_outputs_nan(eval_data):
    n = len(eval_data.images())
    ref = Outputs(np.random.default_rng(0).random((n, 4, 4), np.float32), np.linspace(0, 1, n, dtype=np.float32))
    nan = Outputs(np.full((n, 4, 4), np.nan, np.float32), np.full(n, np.nan, np.float32))
    report = compare(ref, nan, eval_data, auroc_budget=1.0, min_map_correlation=0.9)
    assert not report.passed and any("NaN" in r for r in report.reasons)
