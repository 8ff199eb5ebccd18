"""The export pipeline and its bundle: one pass through the modules in order, the manifest per the contract,
threshold rules, safe overwrite, and refusal of every damage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import export.pipeline as pipeline
from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import SCHEMA, SCHEMA_VERSION, BundleError
from edge_runtime.scoring import SCORE_DEFINITION
from export.job import BundleOptions
from export.onnx_export import ExportConfig, ExportError
from export.parity import synthetic_frames
from export.pipeline import PLUGIN_STEPS, STEPS, write_bundle
from export.tests.conftest import make_run
from slsg.checkpoint import load_run
from slsg.inference import TorchPredictor
from slsg.predictors import load_predictor

FAST = BundleOptions(parity_count=2, export=ExportConfig(simplify=False))


def test_the_export_walks_each_module_once_in_order():
    """Graph, gates, thresholds, manifest: the path never climbs back into a module it has left."""
    modules = [step.__module__ for step in STEPS]
    walked = [m for i, m in enumerate(modules) if i == 0 or m != modules[i - 1]]
    assert walked == ["export.graph", "export.gates", "export.thresholds", "export.pipeline"]
    assert [s.__name__ for s in STEPS if s.__module__ == "export.gates"] == [
        "open_gate", "add_int8", "gate_openvino_int8", "add_fp16", "add_bf16", "lint_models"]
    assert (STEPS[0], STEPS[-1]) == PLUGIN_STEPS  # the fused-plugin graph: exported and described, nothing gated


def test_the_manifest_is_written_once(effnet_run, tmp_path, monkeypatch):
    writes = []
    real = pipeline.write_manifest_file
    monkeypatch.setattr(pipeline, "write_manifest_file", lambda root, m: (writes.append(root), real(root, m))[1])
    result = write_bundle(effnet_run, tmp_path / "m.slsg", FAST)
    assert len(writes) == 1
    # ... and it records how long each step before it took, in the order they ran
    assert list(result.manifest.export["seconds"]) == [s.__name__ for s in STEPS[:-1]]
    assert list(result.steps) == [s.__name__ for s in STEPS] and all(t >= 0 for t in result.steps.values())


def test_manifest_follows_the_contract(effnet_bundle, effnet_run):
    m = json.loads((effnet_bundle / "manifest.json").read_text())  # the file is the contract
    assert (m["schema"], m["schema_version"]) == (SCHEMA, SCHEMA_VERSION)
    assert m["input"] == {"name": "image", "dtype": "uint8", "shape": [1, 64, 64, 3], "layout": "NHWC",
                          "color": "BGR"}
    assert m["outputs"]["anomaly_map"]["shape"] == [1, 1, 64, 64] and m["outputs"]["score"]["shape"] == [1]
    assert m["scores"]["score_slsg"] == {**SCORE_DEFINITION, "head": "slsg"}
    assert m["scores"]["score"]["heads"] == ["slsg"] and set(m["outputs"]) == {"anomaly_map", "score", "score_slsg"}
    assert m["model"]["backbone"] == "efficientnet_lite0"
    run_cfg = json.loads((effnet_run / "config.json").read_text())
    assert m["threshold"] == run_cfg["threshold"] and m["threshold"]["quantiles"]
    assert m["data_fingerprint"] == run_cfg["data"]
    assert {"torch", "onnx", "onnxruntime", "numpy"} <= set(m["versions"])
    assert m["models"] == {"fp32": "model.onnx"} and set(m["files"]) == {"model.onnx"}
    assert m["export"]["parity"]["ok"]
    assert all(v["ok"] for v in m["export"]["tensorrt_ops"]["versions"].values())
    assert (effnet_bundle / "engines").is_dir()


def test_predictor_on_the_bundle_matches_torch(effnet_bundle, effnet_run):
    frames = synthetic_frames(3, 64, seed=5)
    maps = load_predictor(effnet_run, "onnx", bundle=effnet_bundle, threads=1).predict(frames).maps
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    _, model = load_run(effnet_run)
    assert np.max(np.abs(maps - TorchPredictor(model)(frames).maps)) <= 1e-4


def test_run_without_threshold_is_refused_unless_asked(tmp_path):
    run = make_run(tmp_path / "run", "efficientnet_lite0", threshold=False)
    with pytest.raises(ExportError, match="--no-threshold"):
        write_bundle(run, tmp_path / "a.slsg", FAST)
    assert not (tmp_path / "a.slsg").exists()
    opts = BundleOptions(parity_count=2, no_threshold=True, export=ExportConfig(simplify=False))
    bundle = load_bundle(write_bundle(run, tmp_path / "a.slsg", opts).root)
    assert bundle.threshold.n_good == 0 and bundle.threshold.value == 1.0


def test_existing_target_needs_force_and_only_bundles_are_replaced(effnet_run, tmp_path):
    out = tmp_path / "m.slsg"
    write_bundle(effnet_run, out, FAST)
    first = load_bundle(out).manifest.created
    with pytest.raises(ExportError, match="--force"):
        write_bundle(effnet_run, out, FAST)
    opts = BundleOptions(parity_count=2, force=True, export=ExportConfig(simplify=False))
    write_bundle(effnet_run, out, opts)
    assert load_bundle(out).manifest.created >= first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a bundle"):
        write_bundle(effnet_run, other, opts)
    assert (other / "keep.txt").read_text() == "mine"


def _flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(key, value):
    def edit(root):
        m = json.loads((root / "manifest.json").read_text())
        m[key] = value
        (root / "manifest.json").write_text(json.dumps(m))
    return edit


DAMAGE = {
    "model bytes flipped": lambda r: _flip_byte(r / "model.onnx"),
    "model truncated": lambda r: (r / "model.onnx").write_bytes((r / "model.onnx").read_bytes()[:-10]),
    "model missing": lambda r: (r / "model.onnx").unlink(),
    "manifest truncated": lambda r: (r / "manifest.json").write_text((r / "manifest.json").read_text()[:200]),
    "manifest missing": lambda r: (r / "manifest.json").unlink(),
    "manifest foreign schema": _edit_manifest("schema", "other.tool"),
    "manifest newer version": _edit_manifest("schema_version", SCHEMA_VERSION + 1),
    "manifest without threshold": _edit_manifest("threshold", None),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_bundle_is_refused(effnet_bundle, tmp_path, damage):
    copy = tmp_path / "copy.slsg"
    shutil.copytree(effnet_bundle, copy)
    load_bundle(copy)
    DAMAGE[damage](copy)
    with pytest.raises(BundleError):
        load_bundle(copy)
