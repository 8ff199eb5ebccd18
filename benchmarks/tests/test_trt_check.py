"""`benchmarks/trt_check` keeps every precision's result: a failure of one is a row with its stage and
reason, the table and the JSON are always written, the time budget holds, and the script runs from any
directory. Runs on the fakes of NVIDIA's bindings (edge_runtime.tests.fakes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import pytest

from benchmarks import trt_check
from edge_runtime.tensorrt import TensorRTBackend
from edge_runtime.tests.trt_bundles import frames, make_trt_bundle


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
    del bundle.manifest["models"]["fp16"]
    from edge_runtime.bundle import write_manifest

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
