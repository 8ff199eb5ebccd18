"""The line's refit on a real exported model with fitted heads (torch only builds the model): the confirmed-good
frames of a drifted line enter the global Gaussian and the local memory of the model file, their scores fall, the
new version verifies and the parent is untouched."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_runtime.bundle import load_bundle
from edge_runtime.heads.graph import HEAD_TENSORS, LOCAL_MEMORY, find_head
from edge_runtime.heads.memory import greedy_coreset, memory_columns, memory_rows
from edge_runtime.heads.update import pooled_gaussian
from edge_runtime.teach.refit import refit
from edge_runtime.teach.store import DEFECT, GOOD, LineStore
from export.job import BundleOptions
from export.pipeline import write_bundle
from export.run_data import load_samples, open_run_data
from slsg.checkpoint import load_run


@pytest.fixture(scope="module")
def bundle(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("line") / "model.slsg"
    write_bundle(trained_run, out, BundleOptions(parity_count=2))
    return out


def _initializers(path) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_a_refit_takes_drifted_good_frames_into_the_heads_of_the_model_file(bundle, trained_run, tmp_path):
    copy = tmp_path / "model.slsg"
    shutil.copytree(bundle, copy)
    run, _ = load_run(trained_run)
    size = run.model_config.hw
    goods = (load_samples(open_run_data(run.config).validation, size).astype(np.float32) * 0.6).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)  # plainly not a good part
    store = LineStore(copy)
    for i, frame in enumerate(goods[:4]):
        store.review(f"g{i}", frame, {}, GOOD, "ana")
    for i, frame in enumerate(noise):
        store.review(f"d{i}", frame, {}, DEFECT, "ana")
    report = refit(store, "ana")
    fp32 = next(m for m in report.models if m.model == "fp32")
    assert [h["file"] for h in report.heads] == ["model.onnx"] and report.heads[0]["local"]["new_patches"] > 0
    assert np.median(fp32.good_after) < np.median(fp32.good_before)  # the drifted goods look less unusual
    assert report.accepted, report.reasons
    old, new = _initializers(copy / "model.onnx"), _initializers(store.version_path(report.version) / "model.onnx")
    assert not np.allclose(old[HEAD_TENSORS["whiten"]], new[HEAD_TENSORS["whiten"]])
    assert not np.array_equal(old[LOCAL_MEMORY], new[LOCAL_MEMORY]) and old[LOCAL_MEMORY].shape == new[
        LOCAL_MEMORY].shape
    changed = {k for k in old if not np.array_equal(old[k], new[k])}
    head = find_head(onnx.load(str(copy / "model.onnx")))
    assert changed <= {*HEAD_TENSORS.values(), LOCAL_MEMORY, head.inv_scale}  # the heads' statistics and scales only
    assert load_bundle(copy) and load_bundle(store.version_path(report.version))  # the parent still verifies


def test_pooling_with_no_new_images_keeps_the_gaussian_and_the_memory_layout_round_trips():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    mean, std = x.mean(0), x.std(0)
    cov = np.cov(((x - mean) / std).T, bias=True)
    stats = {"mean": mean, "inv_std": 1 / std, "whiten": np.linalg.cholesky(np.linalg.inv(cov))}
    same = pooled_gaussian(stats, np.zeros((0, 6)), 200)
    np.testing.assert_allclose(same["whiten"], stats["whiten"], rtol=1e-9)
    moved = pooled_gaussian(stats, x + 5.0, 200)  # as many images again, all shifted: the mean moves halfway
    np.testing.assert_allclose(moved["mean"], mean + 2.5, rtol=1e-9)
    m = rng.standard_normal((50, 8)).astype(np.float32)
    np.testing.assert_allclose(memory_rows(memory_columns(m)), m, rtol=1e-6)
    core = greedy_coreset(np.concatenate([m, m + 100.0]), 60, projection=0)
    assert (core.indices >= 50).sum() >= 10  # the far-away new patches get their place
