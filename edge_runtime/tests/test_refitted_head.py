"""A global head refitted for OpenVINO travels beside the model file: the backend puts it into the graph in memory,
and a head file that is damaged, foreign or not covered by the manifest is refused, never half-applied."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.backends.base import BackendError
from edge_runtime.backends.openvino_backend import OpenVinoBackend, openvino_available
from edge_runtime.backends.refitted_head import head_file, read_head, save_head
from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import BundleError, Manifest, sha256_file, write_manifest
from edge_runtime.tests.conftest import SIZE

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed here "
                                    "(pip install 'slsg[openvino]')")


def test_a_head_file_is_read_without_unpickling_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    save_head(tmp_path / "ok.npz", {"deploy.global_head.mean": np.arange(4, dtype=np.float32)})
    assert read_head(tmp_path / "ok.npz")["deploy.global_head.mean"].tolist() == [0, 1, 2, 3]
    np.savez(tmp_path / "objects.npz", mean=np.array([{"a": 1}], dtype=object))  # needs pickle to read back
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:40])
    np.save(tmp_path / "single.npy", np.zeros(3, np.float32))
    for bad in ("objects.npz", "cut.npz", "single.npy"):
        with pytest.raises(BackendError, match="copy the bundle again or re-export"):
            read_head(tmp_path / bad)


def _bundle_with_head(root: Path, tensors: dict) -> Path:
    manifest = json.loads((root / "manifest.json").read_text())
    save_head(root / head_file("openvino:int8-s8"), tensors)
    manifest["heads"] = {"openvino:int8-s8": head_file("openvino:int8-s8")}
    write_manifest(root, Manifest.new(manifest))
    return root


def test_a_head_the_manifest_does_not_hash_is_refused(bundle_dir: Path) -> None:
    root = _bundle_with_head(bundle_dir, {"c255": np.float32(510.0)})
    assert load_bundle(root).head_for("openvino:int8-s8") == root / "heads/openvino.int8-s8.npz"
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["files"]["heads/openvino.int8-s8.npz"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not covered by the manifest's hashes"):
        load_bundle(root)


@needs_openvino
def test_openvino_runs_the_model_with_the_head_put_in_and_the_file_untouched(bundle_dir: Path) -> None:
    """The test model's map is image / c255: a head that sets c255 to 510 halves it under OpenVINO alone."""

    model = bundle_dir / "model.onnx"
    before = sha256_file(model)
    root = _bundle_with_head(bundle_dir, {"c255": np.float32(510.0)})
    frame = np.full((1, SIZE, SIZE, 3), 200, np.uint8)
    plain = OpenVinoBackend(model, precision="int8", threads=1).run(frame).maps
    refitted = OpenVinoBackend(model, precision="int8", threads=1, head=load_bundle(root).head_for("openvino:int8-s8"))
    np.testing.assert_allclose(refitted.run(frame).maps, plain / 2, rtol=1e-6)
    assert "global head refitted for OpenVINO" in refitted.providers[0]
    assert sha256_file(model) == before


@needs_openvino
@pytest.mark.parametrize("tensors, why", [({"not_in_model": np.float32(1.0)}, "which the model has not"),
                                          ({"c255": np.ones(3, np.float32)}, "has shape")])
def test_a_head_fitted_for_another_model_is_refused(bundle_dir: Path, tensors: dict, why: str) -> None:
    save_head(bundle_dir / "foreign.npz", tensors)
    with pytest.raises(BackendError, match=why):
        OpenVinoBackend(bundle_dir / "model.onnx", precision="int8", threads=1, head=bundle_dir / "foreign.npz")
