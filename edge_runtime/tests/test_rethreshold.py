"""`slsg-edge threshold`: thresholds from good frames with the bundle's own backend, history kept, bundle
re-hashed and still verifying — in an interpreter that never imports torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.backends.refitted_head import head_file, save_head
from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import BundleError, Manifest, write_manifest
from edge_runtime.rethreshold import read_good_frames, rethreshold
from edge_runtime.scoring import threshold_from_good_scores
from edge_runtime.tests.conftest import SIZE, THRESHOLD, gray, make_bundle, write_video
from edge_runtime.tests.support import run_edge_cli


def _good_folder(root: Path, values: list[int]) -> Path:
    root.mkdir(parents=True)
    for i, v in enumerate(values):
        cv2.imwrite(str(root / f"{i:03d}.png"), gray(v))
    return root


def _expected(values: list[int], rate: float) -> float:
    """The brightness model's score of a flat frame is its value / 255 (edge_runtime.tests.support)."""
    return threshold_from_good_scores(np.array(values, np.float64) / 255.0, rate).value


def test_threshold_runs_torch_free_and_rehashed_bundle_verifies(tmp_path):
    bundle = make_bundle(tmp_path / "model.slsg")
    values = list(range(30, 130, 5))
    good = _good_folder(tmp_path / "good", values)
    out, proc = run_edge_cli(["threshold", str(bundle), "--good", str(good), "--false-reject-rate", "0.05"])
    assert out == {"torch": False, "code": 0}, proc.stdout + proc.stderr
    b = load_bundle(bundle)  # every hash verified after the rewrite
    t = b.threshold_for("fp32")
    assert t.value == pytest.approx(_expected(values, 0.05), abs=1e-6) and t.false_reject_rate == 0.05
    assert b.threshold.value == t.value  # fp32's threshold is the bundle's `threshold`
    history = b.manifest.threshold_history
    assert history[-1]["model"] == "fp32" and history[-1]["previous"]["value"] == THRESHOLD
    assert "slsg-edge threshold" in b.manifest.thresholds["fp32"]["source"]


def test_each_backend_sets_the_threshold_of_its_own_model(tmp_path):
    bundle = make_bundle(tmp_path / "model.slsg", {"int8-u8": "model.int8-u8.onnx"})
    values = list(range(40, 90, 2))
    frames = read_good_frames(_good_folder(tmp_path / "good", values), (SIZE, SIZE))
    results = rethreshold(bundle, frames, 0.1, ["onnx-int8"], threads=1)
    assert [r.model for r in results] == ["int8-u8"]
    b = load_bundle(bundle)
    assert b.threshold_for("int8-u8").value == pytest.approx(_expected(values, 0.1), abs=1e-6)
    assert b.threshold_for("fp32").value == THRESHOLD  # untouched: another model file


def test_all_also_sets_the_threshold_of_an_int8_file_as_openvino_runs_it_with_its_own_head(tmp_path):
    """OpenVINO's INT8 scores are not ONNX Runtime's: a gated `openvino:int8-u8` has a threshold of its own, and
    re-setting it must score with OpenVINO and the head fitted for it (here one that halves the score)."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")

    bundle = make_bundle(tmp_path / "model.slsg", {"int8-u8": "model.int8-u8.onnx"})
    key = "openvino:int8-u8"
    save_head(bundle / head_file(key), {"c255": np.float32(510.0)})
    manifest = json.loads((bundle / "manifest.json").read_text())
    write_manifest(bundle, Manifest.new({**manifest, "openvino_int8": {"int8-u8": {"passed": True, "reasons": []}},
                                         "heads": {key: head_file(key)}}))
    values = list(range(40, 90, 2))
    frames = read_good_frames(_good_folder(tmp_path / "good", values), (SIZE, SIZE))
    results = rethreshold(bundle, frames, 0.1, ["all"], threads=1)
    assert sorted(r.model for r in results) == ["fp32", "int8-u8", key]
    b = load_bundle(bundle)
    assert b.threshold_for(key).value == pytest.approx(_expected(values, 0.1) / 2, abs=1e-6)
    assert b.threshold_for("int8-u8").value == pytest.approx(_expected(values, 0.1), abs=1e-6)


def test_video_of_good_parts_every_nth_frame(tmp_path):
    bundle = make_bundle(tmp_path / "model.slsg")
    video = write_video(tmp_path / "line.avi", [60 + (i % 10) * 4 for i in range(40)])
    frames = read_good_frames(video, (SIZE, SIZE), every=2, limit=15)
    assert len(frames.frames) == 15 and "video" in frames.source
    rethreshold(bundle, frames, 0.05, ["onnx"])
    assert 60 / 255 < load_bundle(bundle).threshold.value < 100 / 255


def test_a_damaged_bundle_is_refused_not_reblessed(tmp_path):
    bundle = make_bundle(tmp_path / "model.slsg")
    frames = read_good_frames(_good_folder(tmp_path / "good", [50, 60, 70]), (SIZE, SIZE))
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-20] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256|damaged"):
        rethreshold(bundle, frames, 0.05)
    assert "threshold_history" not in json.loads((bundle / "manifest.json").read_text())


def test_no_good_frame_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no usable good frame"):
        read_good_frames(empty, (SIZE, SIZE))


def test_without_openvino_its_thresholds_are_kept_with_a_warning_and_the_others_are_set(tmp_path, monkeypatch, caplog):
    bundle = make_bundle(tmp_path / "model.slsg")
    manifest = json.loads((bundle / "manifest.json").read_text())
    old = {"value": 0.9, "false_reject_rate": 0.01, "n_good": 10, "quantiles": {}}

    write_manifest(bundle, Manifest.new({**manifest, "openvino_int8": {"fp32": {"passed": True, "reasons": []}},
                                         "thresholds": {"openvino:int8-u8": old}}))
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails, as where it is not installed
    frames = read_good_frames(_good_folder(tmp_path / "good", list(range(40, 90, 2))), (SIZE, SIZE))
    with caplog.at_level("WARNING"):
        results = rethreshold(bundle, frames, 0.1, ["all"], threads=1)
    assert [r.model for r in results] == ["fp32"]
    assert "openvino:int8-u8 threshold(s) not re-set: OpenVINO is not installed" in caplog.text
    assert load_bundle(bundle).threshold_for("openvino:int8-u8").value == 0.9
