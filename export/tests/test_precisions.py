"""`slsg export --int8 --fp16` calibrates on training images, gates on held-out ones, and the runtime runs it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.bundle import load_bundle
from export.bundle_writer import BundleOptions, write_bundle
from export.onnx_export import ExportError


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from slsg.data.synthetic_scene import SynthCounts, write_dataset
    from slsg.model import ModelConfig
    from slsg.training import TrainConfig, train

    data = write_dataset(tmp_path_factory.mktemp("data"), counts=SynthCounts(10, 6, 4, 4, 4), size=64)
    cfg = TrainConfig(steps=2, batch=2, encoder_weights="random", checkpoint_every=0)
    return train(data, tmp_path_factory.mktemp("run") / "run", ModelConfig(backbone="efficientnet_lite0", size=64),
                 cfg, progress=False)


def test_int8_and_fp16_land_in_a_verified_bundle(trained_run, tmp_path):
    out = tmp_path / "model.slsg"
    result = write_bundle(trained_run, out, BundleOptions(int8=True, fp16=True, calib_size=6, auroc_budget=1.0))
    bundle = load_bundle(out)
    assert set(bundle.models) == {"fp32", "int8", "int8-cpu", "fp16"}
    calib = bundle.manifest["calibration"]
    assert calib["n"] == 6 and (out / calib["tensors"]).is_file()
    assert all("/train/" in image["path"] for image in calib["images"])  # never validation or test images
    assert result.precisions.int8["passed"]
    from edge_runtime.backends import select_backend

    out = select_backend(bundle, "onnx-int8").run(np.zeros((1, 64, 64, 3), np.uint8))
    maps, scores = out.maps, out.score
    assert maps.shape == (1, 64, 64) and np.isfinite(scores).all()


def test_int8_over_budget_is_refused_and_leaves_no_bundle(trained_run, tmp_path):
    out = tmp_path / "model.slsg"
    with pytest.raises(ExportError, match="accuracy gate"):
        write_bundle(trained_run, out, BundleOptions(int8=True, calib_size=4, auroc_budget=-1.0))
    assert not out.exists()
