"""A bundle loads when whole and is refused, with a message that says what to do, when damaged or foreign."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_runtime.bundle import add_file, load_bundle
from edge_runtime.manifest import SCHEMA, SCHEMA_VERSION, BundleError, Manifest, write_manifest
from edge_runtime.preprocess import IMAGENET
from edge_runtime.tests.conftest import SIZE, THRESHOLD, build_brightness_model
from edge_runtime.tests.support import make_bundle, manifest_of


def _edit_manifest(root: Path, **changes) -> None:
    m = json.loads((root / "manifest.json").read_text())
    m.update(changes)
    (root / "manifest.json").write_text(json.dumps(m))


def test_whole_bundle_loads_with_typed_views(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    assert json.loads((bundle_dir / "manifest.json").read_text())["schema"] == SCHEMA
    assert b.manifest.schema_version == SCHEMA_VERSION
    assert b.size == (SIZE, SIZE)
    assert b.normalization == IMAGENET
    assert b.threshold.value == THRESHOLD
    assert b.models == {"fp32": bundle_dir / "model.onnx"}
    assert set(b.manifest.files) == {"model.onnx", "calibration/images.json"}
    rec = b.manifest.files["model.onnx"]
    assert rec.bytes == (bundle_dir / "model.onnx").stat().st_size and len(rec.sha256) == 64


def test_engines_are_not_hashed_and_do_not_break_loading(bundle_dir: Path) -> None:
    (bundle_dir / "engines").mkdir()
    (bundle_dir / "engines" / "orin.engine").write_bytes(b"\x00" * 10)
    m = write_manifest(bundle_dir, Manifest.new(json.loads((bundle_dir / "manifest.json").read_text())))
    assert not any(k.startswith("engines/") for k in m.files)
    (bundle_dir / "engines" / "orin.engine").write_bytes(b"changed")
    load_bundle(bundle_dir)


def test_truncated_file_is_refused(bundle_dir: Path) -> None:
    data = (bundle_dir / "model.onnx").read_bytes()
    (bundle_dir / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(bundle_dir)


def test_flipped_byte_is_refused(bundle_dir: Path) -> None:
    data = bytearray((bundle_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256.*damaged"):
        load_bundle(bundle_dir)


def test_deleted_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "calibration" / "images.json").unlink()
    with pytest.raises(BundleError, match="missing calibration/images.json"):
        load_bundle(bundle_dir)


def test_foreign_schema_is_refused(bundle_dir: Path) -> None:
    _edit_manifest(bundle_dir, schema="someone.else")
    with pytest.raises(BundleError, match="not an slsg bundle"):
        load_bundle(bundle_dir)


def test_newer_schema_version_asks_to_upgrade(bundle_dir: Path) -> None:
    _edit_manifest(bundle_dir, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(BundleError, match="made by a newer slsg; upgrade the runtime"):
        load_bundle(bundle_dir)


def test_a_version_1_bundle_loads_with_todays_int8_keys_and_its_own_file_names(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "old.slsg", {"int8-s8": "model.int8.onnx", "int8-u8": "model.int8-cpu.onnx"})
    m = json.loads((root / "manifest.json").read_text())
    old = {"value": 0.7, "false_reject_rate": 0.01, "n_good": 10, "quantiles": {}}
    _edit_manifest(root, schema_version=1, models={"fp32": "model.onnx", "int8": "model.int8.onnx",
                                                   "int8-cpu": "model.int8-cpu.onnx"},
                   thresholds={"fp32": m["threshold"], "int8": old, "openvino:int8-cpu": old},
                   openvino_int8={"int8": {"passed": True}, "int8-cpu": {"passed": False}},
                   int8_report={"kept": ["int8", "int8-cpu"], "flavours": {"int8": {}, "int8-cpu": {}}},
                   export={"left_out": {"int8": {"reasons": ["calibration"]}, "int8-cpu": {"reasons": ["gate"]}}})
    b = load_bundle(root)
    assert b.models == {"fp32": root / "model.onnx", "int8-s8": root / "model.int8.onnx",
                        "int8-u8": root / "model.int8-cpu.onnx"}
    assert b.threshold_for("int8-s8").value == 0.7 and b.threshold_for("openvino:int8-u8").value == 0.7
    assert set(b.manifest.openvino_int8) == {"int8-s8", "int8-u8"}
    assert b.manifest.int8_report == {"kept": ["int8-s8", "int8-u8"], "flavours": {"int8-s8": {}, "int8-u8": {}}}
    assert set(b.manifest.left_out) == {"int8-s8", "int8-u8"}  # the INT8 step reported on the symmetric file
    assert b.manifest.schema_version == SCHEMA_VERSION  # and written back as today's version
    write_manifest(root, b.manifest)
    assert json.loads((root / "manifest.json").read_text())["models"]["int8-u8"] == "model.int8-cpu.onnx"
    # without a report on the files, "int8" left out is the whole precision (calibration itself failed)
    _edit_manifest(root, schema_version=1, int8_report=None, export={"left_out": {"int8": {"reasons": ["x"]}}},
                   threshold_history=[{"model": "int8-cpu", "value": 0.6}])
    b = load_bundle(root)
    assert set(b.manifest.left_out) == {"int8"} and b.manifest.threshold_history[0]["model"] == "int8-u8"


@pytest.mark.parametrize("damage", ["no_folder", "no_manifest", "bad_json", "escape"])
def test_unreadable_or_escaping_manifest_is_refused(bundle_dir: Path, damage: str) -> None:
    if damage == "no_folder":
        shutil.rmtree(bundle_dir)
        match = "does not exist"
    elif damage == "no_manifest":
        (bundle_dir / "manifest.json").unlink()
        match = "no manifest.json"
    elif damage == "bad_json":
        (bundle_dir / "manifest.json").write_text('{"schema": "slsg.bundle", ')
        match = "not valid JSON"
    else:
        m = json.loads((bundle_dir / "manifest.json").read_text())
        m["files"]["../outside"] = {"sha256": "0" * 64, "bytes": 1}
        (bundle_dir / "manifest.json").write_text(json.dumps(m))
        match = "outside itself"
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_dir)


def test_add_file_hashes_the_new_model_and_records_its_precision(bundle_dir: Path) -> None:
    build_brightness_model(bundle_dir / "model.int8-u8.onnx")
    m = add_file(bundle_dir, "model.int8-u8.onnx", precision="int8-u8")
    assert m.models["int8-u8"] == "model.int8-u8.onnx"
    b = load_bundle(bundle_dir)
    assert set(b.models) == {"fp32", "int8-u8"}
    assert "model.int8-u8.onnx" in b.manifest.files


def test_add_file_refuses_to_bless_a_damaged_bundle(bundle_dir: Path) -> None:
    (bundle_dir / "calibration" / "images.json").write_text("tampered")
    (bundle_dir / "new.txt").write_text("x")
    with pytest.raises(BundleError):
        add_file(bundle_dir, "new.txt")


def test_write_manifest_refuses_a_model_that_is_not_there(tmp_path: Path) -> None:
    tmp_path.joinpath("b").mkdir()
    with pytest.raises(BundleError, match="missing"):
        write_manifest(tmp_path / "b", manifest_of(models={"fp32": "model.onnx"}))
