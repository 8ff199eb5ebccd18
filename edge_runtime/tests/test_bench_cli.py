"""`slsg-edge bench` on a small real bundle, in a fresh interpreter that must never import torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_runtime.backends.openvino_backend import openvino_available
from edge_runtime.tests.support import make_bundle

SCRIPT = """
import sys
from edge_runtime.cli import app
code = app(sys.argv[1:], standalone_mode=False)
assert "torch" not in sys.modules, "slsg-edge bench imported torch"
sys.exit(code if isinstance(code, int) else 0)
"""


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, "bench", *args], capture_output=True, text=True,
                          timeout=60, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_edge_bench_times_every_backend_without_torch(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "tiny.slsg", extra_models={"int8-u8": "model.int8-u8.onnx"})
    out = tmp_path / "bench.json"
    r = _bench(str(bundle), "--iterations", "5", "--warmup", "1", "--threads", "1", "--profile-runs", "2",
               "--json", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    expected = {"onnx", "onnx-int8"} | ({"openvino"} if openvino_available() else set())
    assert set(report["cases"]) == expected | {f"{n} (engine)" for n in expected}
    assert report["cases"]["onnx"]["end_to_end"]["n"] == 5
    assert set(report["cases"]["onnx"]["stages"]) == {"pre", "infer", "post"}
    assert {"trt-fp16", "trt-int8"} <= set(report["skipped"])
    ops = {row["op"] for row in report["profiles"]["onnx"]["top_ops"]}
    assert {"TopK", "ReduceMean"} <= ops  # which is slowest on a tiny model is up to the machine
    if openvino_available():  # OpenVINO's own per-layer counters, by executed layer type and precision
        assert report["profiles"]["openvino"]["library"] == "openvino"
        assert any(row["op"].startswith("ReduceMean") for row in report["profiles"]["openvino"]["top_ops"])
        assert "openvino-bf16" in report["skipped"]  # no gated bf16 model in this bundle
        assert "gated on ONNX Runtime only" in report["skipped"]["openvino-int8"]
    assert report["machine"]["threads"] == 1 and report["peak_rss_mb"] > 0


def test_edge_bench_refuses_a_damaged_bundle(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "tiny.slsg")
    (bundle / "model.onnx").write_bytes(b"broken")
    r = _bench(str(bundle), "--iterations", "1")
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr


def test_edge_bench_says_when_no_backend_opens(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "tiny.slsg")
    r = _bench(str(bundle), "--backends", "trt-int8", "--iterations", "1")
    assert r.returncode == 2 and "no backend could be opened" in r.stderr
