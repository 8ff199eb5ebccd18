"""The lean runtime loads and runs an exported bundle in a fresh interpreter without importing torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np

from edge_runtime.bundle import load_bundle
from edge_runtime.scoring import image_score
from edge_runtime.tests.support import run_edge_cli
from export.parity import synthetic_frames
from slsg.checkpoint import load_run
from slsg.inference import TorchPredictor

SCRIPT = r"""
import json, sys
import numpy as np
from edge_runtime.bundle import load_bundle
from edge_runtime.backends import select_backend
from edge_runtime.scoring import image_score, is_anomalous
bundle = load_bundle(sys.argv[1])
backend = select_backend(bundle, "onnx", threads=1)
frames = np.load(sys.argv[2])
out = backend.run(frames)
maps, scores = out.maps, out.score
verdicts = is_anomalous(scores, bundle.threshold.value)
print(json.dumps({"torch": "torch" in sys.modules, "scores": scores.tolist(),
                  "rule": image_score(maps).tolist(), "shape": list(maps.shape),
                  "verdicts": verdicts.tolist()}))
"""


def test_runtime_runs_bundle_without_torch(effnet_bundle, effnet_run, tmp_path):
    frames = synthetic_frames(2, 64, seed=3)
    np.save(tmp_path / "frames.npy", frames)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(effnet_bundle), str(tmp_path / "frames.npy")],
                          capture_output=True, text=True, timeout=120, env={"OMP_NUM_THREADS": "1",
                                                                            "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert out["shape"] == [2, 64, 64]
    assert np.allclose(out["scores"], out["rule"], atol=1e-5)
    _, model = load_run(effnet_run)

    torch_scores = image_score(TorchPredictor(model)(frames).maps)
    assert np.allclose(out["scores"], torch_scores, atol=1e-4)


def test_edge_calibrate_rethresholds_an_exported_bundle_without_torch(effnet_bundle, tmp_path):



    bundle = tmp_path / "model.slsg"
    shutil.copytree(effnet_bundle, bundle)
    good = tmp_path / "good"
    good.mkdir()
    for i, frame in enumerate(synthetic_frames(12, 64, seed=11)):
        cv2.imwrite(str(good / f"{i:02d}.png"), frame)
    out, proc = run_edge_cli(["threshold", str(bundle), "--good", str(good), "--backend", "onnx", "--threads", "1"])
    assert out == {"torch": False, "code": 0}, proc.stderr
    b = load_bundle(bundle)  # here, after the torch-free run: every hash verified after the rewrite
    assert len(b.manifest.threshold_history) == 1
    old = json.loads((effnet_bundle / "manifest.json").read_text())["threshold"]["value"]
    assert b.threshold_for("fp32").value != old
