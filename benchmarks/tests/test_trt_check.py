"""`benchmarks/trt_check` keeps every precision's result: a failure of one is a row with its stage and
reason, the table and the JSON are always written, the time budget holds, the fused-plugin bundle is built
where TensorRT ≥ 10.9, every row names its engine's path, and the script runs from any directory. Runs on the
fakes of NVIDIA's bindings (edge_runtime.tests.fakes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import pytest

from benchmarks import trt_check
from edge_runtime.manifest import write_manifest
from edge_runtime.tensorrt import TensorRTBackend
from edge_runtime.tests.fakes.gpu import FakeGpu
from edge_runtime.tests.trt_bundles import frames, make_trt_bundle

RTX = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": (8, 9), "integrated": False, "sm_count": 128,
       "dla_cores": 0}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, f in enumerate(frames(4)):
        cv2.imwrite(str(folder / f"{i}.png"), f)
    return folder


def _rows(path: Path) -> dict:
    return {r["backend"]: r for r in json.loads(path.read_text())["rows"]}


def test_a_failing_precision_is_recorded_and_the_others_still_run(tmp_path, images, fake_trt, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg", int8_qdq=False)     # int8 will fail to build
    out = tmp_path / "check.json"
    code = trt_check.main([str(bundle.root), "--images", str(images), "--iterations", "5", "--warmup", "1",
                           "--json", str(out)])
    assert code == 1
    rows = _rows(out)
    assert rows["onnx:fp32"]["status"] == "reference"
    for name in ("tensorrt-fp32", "tensorrt-fp16"):
        r = rows[name]
        assert r["status"] == "ok" and r["engine_ms"]["n"] == 5 and r["e2e_ms"]["n"] == 5
        assert {"map_correlation", "score_spearman", "verdict_agreement"} <= set(r)
    bad = rows["tensorrt-int8"]
    assert bad["status"] == "failed" and bad["stage"] == "build" and "Calibrator is not being used" in bad["error"]
    table = capsys.readouterr().out
    assert "tensorrt-int8" in table and "failed (build)" in table and "tensorrt-fp16" in table


def test_a_run_failure_is_a_row_too(tmp_path, images, fake_trt, monkeypatch):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    monkeypatch.setattr(TensorRTBackend, "infer_only", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
    out = tmp_path / "check.json"
    assert trt_check.main([str(bundle.root), "--images", str(images), "--iterations", "3", "--warmup", "1",
                           "--precisions", "fp16,int8", "--json", str(out)]) == 1
    rows = _rows(out)
    assert {r["stage"] for r in rows.values() if r["status"] == "failed"} == {"run"}
    assert "RuntimeError: boom" in rows["tensorrt-fp16"]["error"]


def test_a_missing_model_is_skipped_with_the_way_out_and_is_not_a_failure(tmp_path, images, fake_trt):
    fake_trt("11.1", "cuda-python-13")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    (bundle.root / "model.fp16.onnx").unlink()
    del bundle.manifest.models["fp16"]

    write_manifest(bundle.root, bundle.manifest)
    out = tmp_path / "check.json"
    assert trt_check.main([str(bundle.root), "--images", str(images), "--iterations", "2", "--warmup", "1",
                           "--precisions", "fp16,int8", "--json", str(out)]) == 0
    rows = _rows(out)
    assert rows["tensorrt-fp16"]["status"] == "skipped" and "--fp16" in rows["tensorrt-fp16"]["error"]
    assert rows["tensorrt-int8"]["status"] == "ok"


def test_the_time_budget_stops_starting_precisions(tmp_path, images, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    out = tmp_path / "check.json"
    assert trt_check.main([str(bundle.root), "--images", str(images), "--iterations", "2", "--budget-min", "0",
                           "--json", str(out)]) == 0
    assert {r["stage"] for b, r in _rows(out).items() if b.startswith("tensorrt")} == {"budget"}


def test_the_script_runs_from_any_directory_with_the_callers_paths(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "trt_check.sh"
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/usr/bin/env bash\necho "cwd=$PWD"\necho "pythonpath=$PYTHONPATH"\necho "args=$*"\n')
    fake_python.chmod(0o755)
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    proc = subprocess.run(["bash", str(script), "rel/model.slsg", "--images", "rel/imgs"], cwd=elsewhere,
                          capture_output=True, text=True, env={**os.environ, "PYTHON": str(fake_python)})
    assert proc.returncode == 0, proc.stderr
    assert f"cwd={elsewhere}" in proc.stdout
    assert f"pythonpath={script.parents[1]}" in proc.stdout
    assert "args=-m benchmarks.trt_check rel/model.slsg --images rel/imgs" in proc.stdout


@pytest.fixture
def plugin_build(monkeypatch):
    """A fresh plugin registration, and Triton's compile for the build GPU (absent here) answered with a fixed
    kernel: what is checked is which engines trt_check builds and how it reports them."""
    trt_plugin = pytest.importorskip("edge_runtime.kernels.trt_plugin", reason="needs triton (the kernels extra)")
    monkeypatch.setattr(trt_plugin, "_registered", False)
    monkeypatch.setattr(trt_plugin, "compile_kernel", lambda dtype, k, dilation, tiles, int_values=None:
                        trt_plugin.CompiledKernel("graph_attention_kernel", "// ptx", tiles.num_warps, 0))


def test_the_fused_bundle_is_built_with_the_plugin_on_tensorrt_10_9_and_rows_name_their_path(
        tmp_path, images, fake_trt, plugin_build, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    fake_trt("10.16", "cuda-python-13", gpu=FakeGpu(**RTX))
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    fused = make_trt_bundle(tmp_path / "fused.slsg", plugin=True)
    out = tmp_path / "check.json"
    assert trt_check.main([str(bundle.root), "--images", str(images), "--iterations", "2", "--warmup", "1",
                           "--precisions", "fp32", "--fused", str(fused.root), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    assert rows["tensorrt-fp32"]["path"] == "standard ops · GPU"
    fused_row = rows["tensorrt-fused-fp32"]
    assert fused_row["status"] == "ok" and fused_row["engine"].startswith("fp32-")
    assert fused_row["path"] == "fused plugin slsg::GraphAttention (AOT kernel in the engine) · GPU"
    assert fused_row["map_correlation"] > 0.99 and data["header"]["fused plugin"] == "built (TensorRT ≥ 10.9)"
    assert "fused plugin slsg::GraphAttention" in capsys.readouterr().out


def test_before_tensorrt_10_9_the_fused_rows_say_why_and_the_check_still_passes(tmp_path, images, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    fused = make_trt_bundle(tmp_path / "fused.slsg", plugin=True)
    out = tmp_path / "check.json"
    assert trt_check.main([str(bundle.root), "--images", str(images), "--iterations", "2", "--warmup", "1",
                           "--precisions", "fp16", "--fused", str(fused.root), "--json", str(out)]) == 0
    row = _rows(out)["tensorrt-fused-fp16"]
    assert row["status"] == "skipped" and "needs TensorRT ≥ 10.9" in row["error"] and "10.3.0 is here" in row["error"]
    assert _rows(out)["tensorrt-fp16"]["path"] == "standard ops · GPU"


def test_a_fused_bundle_given_as_the_reference_is_refused_with_the_way_out(tmp_path, images, fake_trt):
    fake_trt("10.16", "cuda-python-13", gpu=FakeGpu(**RTX))
    fused = make_trt_bundle(tmp_path / "fused.slsg", plugin=True)
    out = tmp_path / "check.json"
    assert trt_check.main([str(fused.root), "--images", str(images), "--json", str(out)]) == 1
    assert "give the standard-op bundle of the same run as BUNDLE and this one as --fused" in \
        _rows(out)["onnx:fp32"]["error"]
