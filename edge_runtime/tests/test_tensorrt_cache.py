"""Engine cache: the key holds everything that makes an engine valid, and only an exact, undamaged match
is ever trusted. Engines here are real files with made-up bytes: what is tested is the cache's decision."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_runtime.kernels import identity
from edge_runtime.tensorrt import find_cached_engine, tensorrt_available
from edge_runtime.tensorrt.cache import (
    Target,
    calibration_cache_path,
    engine_path,
    find_in_cache,
    list_engines,
    lookup,
    sidecar_path,
    store_engine,
    timing_cache_path,
)
from edge_runtime.tensorrt.cuda import DeviceInfo
from edge_runtime.tensorrt.errors import BuildRequestError, PrecisionError
from edge_runtime.tensorrt.recipe import EngineKey, EngineRequest, gpu_slug, make_recipe
from edge_runtime.tensorrt.versions import api_plan
from edge_runtime.tests.support import manifest_of

AGX_ORIN = DeviceInfo("Orin (nvgpu)", (8, 7), True, 30_697 << 20, 16)
ORIN_NANO = DeviceInfo("Orin (nvgpu)", (8, 7), True, 7_620 << 20, 8)      # same name, same sm_87
RTX = DeviceInfo("NVIDIA GeForce RTX 4090", (8, 9), False, 24_564 << 20, 128)
TRT = "10.3.0.30"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bundle(tmp_path: Path):
    """A dynamic-batch bundle with two ONNX-named files and a manifest that hashes them."""
    root = tmp_path / "model.slsg"
    root.mkdir()
    files = {"model.onnx": b"fp32 graph bytes", "model.int8-s8.onnx": b"int8 qdq graph bytes"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    manifest = {"models": {"fp32": "model.onnx", "int8-s8": "model.int8-s8.onnx"},
                "input": {"shape": ["N", 64, 64, 3]},
                "files": {n: {"sha256": _sha(d), "bytes": len(d)} for n, d in files.items()}}
    return SimpleNamespace(root=root, manifest=manifest_of(**manifest))


def _recipe(bundle, request=EngineRequest("fp16"), device=AGX_ORIN, ver=TRT):
    return make_recipe(bundle, request, api_plan(ver), device, ver)


def _key(bundle, **kw) -> EngineKey:
    return _recipe(bundle, **kw).key


def _target(device=AGX_ORIN, ver=TRT) -> Target:
    return Target(api_plan(ver), ver, device)


def test_gpu_names_become_readable_slugs():
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "geforce-rtx-4090"
    assert gpu_slug("Orin (nvgpu)") == "orin-nvgpu"
    assert gpu_slug("???") == "gpu"


def test_key_holds_device_tensorrt_build_settings_and_onnx(bundle):
    key = _key(bundle, request=EngineRequest("fp16", max_batch=8))
    assert (key.gpu_name, key.compute_capability, key.sm_count, key.memory_mib) == ("Orin (nvgpu)", "8.7", 16, 30_697)
    assert key.tensorrt_version == "10.3.0.30"             # the full build, not 10.3.0
    assert key.builder_flags == ("FP16", "PREFER_PRECISION_CONSTRAINTS")
    assert key.float_layers == ("TOPK", "SOFTMAX", "REDUCE")
    assert (key.max_batch, key.dynamic_batch, key.dla_core, key.plugins) == (8, True, -1, ())
    assert key.onnx_sha256 == bundle.manifest.files["model.onnx"].sha256


def test_engine_file_name_is_readable_and_unique_per_key(bundle):
    key = _key(bundle)
    assert key.file_stem() == f"fp16-orin-nvgpu-sm87-trt10.3.0.30-b1-{key.digest()[:8]}"
    assert engine_path(bundle.root, key).parent.name == "engines"
    assert _key(bundle, request=EngineRequest("fp16", max_batch=8)).file_stem() != key.file_stem()


def test_a_batch_8_build_is_not_the_cached_batch_1_engine(bundle):
    one = store_engine(bundle.root, _recipe(bundle), b"batch-1 engine", {})
    eight = _key(bundle, request=EngineRequest("fp16", max_batch=8))
    found = lookup(bundle.root, eight)
    assert not found.hit and "max_batch 1 ≠ 8" in found.reason and one.name in found.reason
    store_engine(bundle.root, _recipe(bundle, request=EngineRequest("fp16", max_batch=8)), b"batch-8 engine", {})
    assert one.read_bytes() == b"batch-1 engine"           # --force of one key never overwrites another


def test_an_agx_orin_engine_is_not_trusted_on_an_orin_nano(bundle):
    store_engine(bundle.root, _recipe(bundle, device=AGX_ORIN), b"agx engine", {})
    found = lookup(bundle.root, _key(bundle, device=ORIN_NANO))
    assert not found.hit and "sm_count 16 ≠ 8" in found.reason and "memory_mib" in found.reason


def test_another_build_of_the_same_tensorrt_release_is_another_target(bundle):
    store_engine(bundle.root, _recipe(bundle, ver="10.3.0.26"), b"engine", {})
    found = lookup(bundle.root, _key(bundle, ver="10.3.0.30"))
    assert not found.hit and "tensorrt_version '10.3.0.26' ≠ '10.3.0.30'" in found.reason


@pytest.mark.parametrize("field, value", [
    ("gpu_name", "Xavier"), ("compute_capability", "7.2"), ("sm_count", 8), ("memory_mib", 7620),
    ("tensorrt_version", "8.6.2.3"), ("builder_flags", ["FP16"]), ("float_layers", []),
    ("plugins", ["slsg::GraphAttention"]), ("max_batch", 4), ("dynamic_batch", False), ("dla_core", 0),
    ("onnx_sha256", "0" * 64), ("workspace_mb", 512), ("plugin_kernel_sha256", "0" * 64),
    ("triton_version", "3.3.0"), ("plugin_tiles", "m64-n32-c32-d64-w8")])
def test_sidecar_recording_another_target_is_a_miss_naming_the_field(bundle, field, value):
    key = _key(bundle)
    path = store_engine(bundle.root, _recipe(bundle), b"engine bytes", {})
    side = json.loads(sidecar_path(path).read_text())
    side["key"][field] = value           # same file name, foreign content: never trusted
    sidecar_path(path).write_text(json.dumps(side))
    found = lookup(bundle.root, key)
    assert not found.hit and field in found.reason and "\n" not in found.reason


def test_stored_engine_is_found_again_with_its_sidecar(bundle):
    recipe = _recipe(bundle)
    path = store_engine(bundle.root, recipe, b"engine bytes", {"workspace_mb": 256})
    found = lookup(bundle.root, recipe.key)
    assert found.hit and found.engine_path == path
    side = json.loads(sidecar_path(path).read_text())
    assert EngineKey.from_dict(side["key"]) == recipe.key
    assert EngineRequest.from_dict(side["request"]) == recipe.request
    assert side["engine"]["sha256"] == _sha(b"engine bytes")
    assert side["build"]["workspace_mb"] == 256 and "created" in side["build"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_re_exported_onnx_invalidates_the_engine(bundle):
    store_engine(bundle.root, _recipe(bundle), b"engine bytes", {})
    (bundle.root / "model.onnx").write_bytes(b"retrained graph")
    bundle.manifest.files["model.onnx"].sha256 = _sha(b"retrained graph")
    assert not lookup(bundle.root, _key(bundle)).hit


def test_damaged_engine_is_a_miss(bundle):
    recipe = _recipe(bundle)
    path = store_engine(bundle.root, recipe, b"engine bytes", {})
    path.write_bytes(b"engine bytez")
    found = lookup(bundle.root, recipe.key)
    assert not found.hit and "damaged" in found.reason


@pytest.mark.parametrize("sidecar_text, reason", [(None, "no sidecar"), ("{not json", "unreadable"),
                                                  ('{"schema": "other"}', "not an slsg engine sidecar"),
                                                  ('{"schema": "slsg.engine", "schema_version": 1}', "version 1")])
def test_engine_without_a_valid_sidecar_is_not_trusted(bundle, sidecar_text, reason):
    recipe = _recipe(bundle)
    path = store_engine(bundle.root, recipe, b"engine bytes", {})
    if sidecar_text is None:
        sidecar_path(path).unlink()
    else:
        sidecar_path(path).write_text(sidecar_text)
    found = lookup(bundle.root, recipe.key)
    assert not found.hit and reason in found.reason


def test_max_batch_on_a_fixed_batch_graph_is_refused_not_ignored(bundle):
    bundle.manifest.input.shape = [1, 64, 64, 3]
    with pytest.raises(BuildRequestError, match="fixed batch of 1, so --max-batch 8 cannot apply.*--dynamic-batch"):
        _key(bundle, request=EngineRequest("fp16", max_batch=8))
    key = _key(bundle)                                     # no --max-batch: the graph's own batch
    assert (key.max_batch, key.dynamic_batch) == (1, False)
    bundle.manifest.input.shape = [4, 64, 64, 3]
    assert _key(bundle).max_batch == 4 and _key(bundle, request=EngineRequest("fp16", max_batch=4)).max_batch == 4


def test_qdq_and_calibrated_int8_engines_have_distinct_names(bundle):
    bundle.manifest.calibration = {"tensors": "calibration/frames.npy"}
    (bundle.root / "calibration").mkdir()
    (bundle.root / "calibration" / "frames.npy").write_bytes(b"x")
    qdq = _key(bundle, request=EngineRequest("int8"))
    cal = _key(bundle, request=EngineRequest("int8", legacy_calibrator=True))
    assert qdq.file_stem().startswith("int8-orin") and cal.file_stem().startswith("int8-calib-orin")
    assert qdq.onnx_name == "model.int8-s8.onnx" and cal.onnx_name == "model.onnx"


def test_timing_and_calibration_caches_are_per_device_and_full_tensorrt_version(bundle):
    a = timing_cache_path(bundle.root, AGX_ORIN, "10.3.0.30")
    assert a != timing_cache_path(bundle.root, ORIN_NANO, "10.3.0.30")
    assert a != timing_cache_path(bundle.root, AGX_ORIN, "10.3.0.26")
    key = _key(bundle)
    assert calibration_cache_path(bundle.root, key, 4) != calibration_cache_path(
        bundle.root, replace(key, tensorrt_version="8.6.2.3"), 4)
    assert calibration_cache_path(bundle.root, key, 4) != calibration_cache_path(bundle.root, key, 1)


def test_the_runtime_takes_the_latest_fitting_engine_of_a_precision(bundle):
    first = store_engine(bundle.root, _recipe(bundle), b"batch 1", {"created": "2026-01-01T00:00:00+00:00"})
    second = store_engine(bundle.root, _recipe(bundle, request=EngineRequest("fp16", max_batch=4)), b"batch 4",
                          {"created": "2026-02-01T00:00:00+00:00"})
    store_engine(bundle.root, _recipe(bundle, device=ORIN_NANO), b"nano", {"created": "2026-03-01T00:00:00+00:00"})
    assert find_in_cache(bundle, "fp16", _target()).engine_path == second
    second.write_bytes(b"damaged")
    assert find_in_cache(bundle, "fp16", _target()).engine_path == first


def test_find_in_cache_miss_explains_why(bundle):
    found = find_in_cache(bundle, "fp16", _target())
    assert not found.hit and "no cached fp16 engine" in found.reason
    store_engine(bundle.root, _recipe(bundle, device=ORIN_NANO), b"nano", {})
    found = find_in_cache(bundle, "fp16", _target())
    assert not found.hit and "sm_count 8 ≠ 16" in found.reason


def test_manifest_without_the_onnx_hash_is_an_error(bundle):
    del bundle.manifest.files["model.onnx"]
    with pytest.raises(PrecisionError, match="no sha256 for 'model.onnx'"):
        _key(bundle)


@pytest.mark.skipif(tensorrt_available(), reason="checks the answer on a machine without TensorRT")
def test_find_cached_engine_is_none_without_tensorrt(bundle):
    store_engine(bundle.root, _recipe(bundle), b"engine bytes", {})
    assert find_cached_engine(bundle, "fp16") is None


def test_list_engines_reports_keys_fit_and_untrusted_files(bundle):
    good = store_engine(bundle.root, _recipe(bundle), b"engine bytes", {})
    nano = store_engine(bundle.root, _recipe(bundle, device=ORIN_NANO), b"nano", {})
    (good.parent / "stray.engine").write_bytes(b"?")
    listed = {e.file: e for e in list_engines(bundle, _target())}
    assert listed[good.name].fits is True and listed[good.name].key["precision"] == "fp16"
    assert listed[nano.name].fits is False and "sm_count 8 ≠ 16" in listed[nano.name].reason
    assert listed["stray.engine"].fits is False and "no sidecar" in listed["stray.engine"].reason
    unchecked = {e.file: e for e in list_engines(bundle)}
    assert unchecked[good.name].fits is None and unchecked[good.name].key["max_batch"] == 1


def test_key_round_trips_through_json(bundle):
    key = _key(bundle, request=EngineRequest("fp16", max_batch=4))
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    assert replace(key, precision="fp32") != key


def _plugin_bundle(bundle):
    bundle.manifest.plugins = ["slsg::GraphAttention"]
    return bundle


def test_the_key_of_a_plugin_engine_holds_the_kernel_sources_triton_and_tiles(bundle, monkeypatch):


    # Triton is absent on a Jetson's runtime image: any installed distribution stands in for it.
    monkeypatch.setattr(identity, "TRITON_DISTRIBUTIONS", ("no-such-triton", "pytest"))

    plain = _key(bundle, ver="10.9.0.34")
    assert (plain.plugin_kernel_sha256, plain.triton_version, plain.plugin_tiles) == ("", "", "")
    key = _key(_plugin_bundle(bundle), ver="10.9.0.34")
    digest = hashlib.sha256()
    for path in identity.SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    assert key.plugin_kernel_sha256 == digest.hexdigest()
    assert {p.name for p in identity.SOURCES} == {"graph_attention_triton.py", "trt_plugin.py"}
    assert key.triton_version == metadata.version("pytest") and key.plugin_tiles == "m32-n32-c32-d64-w4"


@pytest.mark.parametrize("change, field", [("kernel", "plugin_kernel_sha256"), ("triton", "triton_version")])
def test_a_fixed_kernel_or_another_triton_never_reuses_a_cached_plugin_engine(bundle, tmp_path, monkeypatch,
                                                                             change, field):

    bundle = _plugin_bundle(bundle)
    monkeypatch.setattr(identity, "TRITON_DISTRIBUTIONS", ("pytest",))  # an installed stand-in for Triton
    store_engine(bundle.root, _recipe(bundle, ver="10.9.0.34"), b"engine with the old kernel", {})
    if change == "kernel":
        fixed = [tmp_path / p.name for p in identity.SOURCES]
        for src, dst in zip(identity.SOURCES, fixed):
            dst.write_bytes(src.read_bytes() + b"\n# fixed\n")
        monkeypatch.setattr(identity, "SOURCES", tuple(fixed))
    else:
        monkeypatch.setattr(identity, "TRITON_DISTRIBUTIONS", ("no-such-triton",))
    found = lookup(bundle.root, _key(bundle, ver="10.9.0.34"))
    assert not found.hit and field in found.reason


def test_the_workspace_is_part_of_the_key(bundle):
    store_engine(bundle.root, _recipe(bundle, request=EngineRequest("fp16", workspace_mb=256)), b"engine", {})
    found = lookup(bundle.root, _key(bundle, request=EngineRequest("fp16", workspace_mb=1024)))
    assert not found.hit and "workspace_mb 256 ≠ 1024" in found.reason
    assert lookup(bundle.root, _key(bundle, request=EngineRequest("fp16", workspace_mb=256))).hit
