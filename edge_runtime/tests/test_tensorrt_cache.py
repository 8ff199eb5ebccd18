"""Engine cache: keys, file names, and that only an exact, undamaged match is ever trusted.

Engines here are real files with made-up bytes: what is tested is the cache's decision, not TensorRT.
"""

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_runtime.tensorrt import find_cached_engine, tensorrt_available
from edge_runtime.tensorrt.cache import (
    EngineKey,
    engine_path,
    gpu_slug,
    list_engines,
    lookup,
    sidecar_path,
    store_engine,
)
from edge_runtime.tensorrt.device import DeviceInfo
from edge_runtime.tensorrt.recipe import find_in_cache, make_recipe
from edge_runtime.tensorrt.versions import api_plan

ORIN = DeviceInfo("Orin (nvgpu)", (8, 7), True, 32 << 30)
RTX = DeviceInfo("NVIDIA GeForce RTX 4090", (8, 9), False, 24 << 30)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bundle(tmp_path: Path):
    """A bundle folder with two small ONNX-named files and a manifest that hashes them."""
    root = tmp_path / "model.slsg"
    root.mkdir()
    files = {"model.onnx": b"fp32 graph bytes", "model.int8.onnx": b"int8 qdq graph bytes"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    manifest = {"models": {"fp32": "model.onnx", "int8": "model.int8.onnx"},
                "files": {n: {"sha256": _sha(d), "bytes": len(d)} for n, d in files.items()}}
    return SimpleNamespace(root=root, manifest=manifest)


def _key(bundle, precision="fp16", device=ORIN, ver="10.3.0"):
    return make_recipe(bundle, precision, api_plan(ver), device).key


def test_gpu_names_become_readable_slugs():
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "geforce-rtx-4090"
    assert gpu_slug("Orin (nvgpu)") == "orin-nvgpu"
    assert gpu_slug("???") == "gpu"


def test_engine_file_name_carries_precision_gpu_sm_trt_and_onnx_hash(bundle):
    key = _key(bundle)
    sha8 = bundle.manifest["files"]["model.onnx"]["sha256"][:8]
    assert key.file_stem() == f"fp16-orin-nvgpu-sm87-trt10.3.0-{sha8}"
    assert engine_path(bundle.root, key).parent.name == "engines"


def test_stored_engine_is_found_again_with_its_sidecar(bundle):
    key = _key(bundle)
    path = store_engine(bundle.root, key, b"engine bytes", {"workspace_mb": 256})
    found = lookup(bundle.root, key)
    assert found.hit and found.engine_path == path
    side = json.loads(sidecar_path(path).read_text())
    assert side["key"]["onnx_sha256"] == key.onnx_sha256
    assert side["engine"]["sha256"] == _sha(b"engine bytes")
    assert side["build"]["workspace_mb"] == 256 and "created" in side["build"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("field, value", [("gpu_name", "Xavier"), ("compute_capability", "7.2"),
                                          ("tensorrt_version", "8.6.1"), ("onnx_sha256", "0" * 64)])
def test_sidecar_recording_another_target_is_a_miss_naming_the_field(bundle, field, value):
    key = _key(bundle)
    path = store_engine(bundle.root, key, b"engine bytes", {})
    side = json.loads(sidecar_path(path).read_text())
    side["key"][field] = value           # same file name, foreign content: never trusted
    sidecar_path(path).write_text(json.dumps(side))
    found = lookup(bundle.root, key)
    assert not found.hit and field in found.reason


def test_other_device_or_tensorrt_looks_for_another_file(bundle):
    store_engine(bundle.root, _key(bundle), b"engine bytes", {})
    assert not lookup(bundle.root, _key(bundle, device=RTX)).hit
    assert not lookup(bundle.root, _key(bundle, ver="10.9.0")).hit
    assert not lookup(bundle.root, _key(bundle, precision="fp32")).hit


def test_re_exported_onnx_invalidates_the_engine(bundle):
    store_engine(bundle.root, _key(bundle), b"engine bytes", {})
    (bundle.root / "model.onnx").write_bytes(b"retrained graph")
    bundle.manifest["files"]["model.onnx"]["sha256"] = _sha(b"retrained graph")
    assert not lookup(bundle.root, _key(bundle)).hit


def test_damaged_engine_is_a_miss(bundle):
    key = _key(bundle)
    path = store_engine(bundle.root, key, b"engine bytes", {})
    path.write_bytes(b"engine bytez")
    found = lookup(bundle.root, key)
    assert not found.hit and "damaged" in found.reason


@pytest.mark.parametrize("sidecar_text, reason", [(None, "no sidecar"), ("{not json", "unreadable"),
                                                  ('{"schema": "other"}', "not an slsg engine sidecar")])
def test_engine_without_a_valid_sidecar_is_not_trusted(bundle, sidecar_text, reason):
    key = _key(bundle)
    path = store_engine(bundle.root, key, b"engine bytes", {})
    if sidecar_text is None:
        sidecar_path(path).unlink()
    else:
        sidecar_path(path).write_text(sidecar_text)
    found = lookup(bundle.root, key)
    assert not found.hit and reason in found.reason


def test_qdq_and_calibrated_int8_engines_have_distinct_names(bundle):
    bundle.manifest["calibration"] = {"tensors": "calibration/frames.npy"}
    (bundle.root / "calibration").mkdir()
    (bundle.root / "calibration" / "frames.npy").write_bytes(b"x")
    qdq = make_recipe(bundle, "int8", api_plan("10.3.0"), ORIN).key
    cal = make_recipe(bundle, "int8", api_plan("10.3.0"), ORIN, legacy_calibrator=True).key
    assert qdq.file_stem().startswith("int8-orin") and cal.file_stem().startswith("int8-calib-orin")
    assert qdq.onnx_name == "model.int8.onnx" and cal.onnx_name == "model.onnx"


def test_find_in_cache_falls_back_to_a_calibrated_int8_engine(bundle):
    bundle.manifest["calibration"] = {"tensors": "frames.npy"}
    (bundle.root / "frames.npy").write_bytes(b"x")
    del bundle.manifest["models"]["int8"]
    cal = make_recipe(bundle, "int8", api_plan("10.3.0"), ORIN, legacy_calibrator=True).key
    path = store_engine(bundle.root, cal, b"calibrated", {})
    assert find_in_cache(bundle, "int8", api_plan("10.3.0"), ORIN).engine_path == path


def test_find_in_cache_miss_explains_why(bundle):
    found = find_in_cache(bundle, "fp16", api_plan("10.3.0"), ORIN)
    assert not found.hit and "no cached engine fp16-orin-nvgpu-sm87" in found.reason


def test_manifest_without_the_onnx_hash_is_an_error(bundle):
    del bundle.manifest["files"]["model.onnx"]
    with pytest.raises(Exception, match="no sha256 for 'model.onnx'"):
        _key(bundle)


@pytest.mark.skipif(tensorrt_available(), reason="checks the answer on a machine without TensorRT")
def test_find_cached_engine_is_none_without_tensorrt(bundle):
    store_engine(bundle.root, _key(bundle), b"engine bytes", {})
    assert find_cached_engine(bundle, "fp16") is None


def test_list_engines_reports_good_and_untrusted_files(bundle):
    path = store_engine(bundle.root, _key(bundle), b"engine bytes", {"max_batch": 1})
    (path.parent / "stray.engine").write_bytes(b"?")
    listed = {e["file"]: e for e in list_engines(bundle.root)}
    assert listed[path.name]["key"]["precision"] == "fp16"
    assert "no sidecar" in listed["stray.engine"]["error"]


def test_key_round_trips_through_json(bundle):
    key = _key(bundle)
    assert EngineKey.from_dict(json.loads(json.dumps(key.__dict__))) == key
    assert replace(key, precision="fp32") != key
