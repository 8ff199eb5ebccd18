"""Parity separates broken exports from kNN tie flips: a trained model exports with the defaults, and each
injected export bug (wrong normalisation, wrong colour order, a missing layer) fails."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edge_runtime.backends.base import Outputs
from edge_runtime.scoring import image_score
from export.graph import choose_graph
from export.job import BundleOptions
from export.onnx_export import ExportConfig, ExportError, deploy_for_run, export_onnx
from export.parity import ParityLimits, check_parity, compare_outputs, order_kept, parity_frames, synthetic_frames
from export.pipeline import write_bundle
from export.run_data import open_run_data
from export.tests import export_bugs as bugs
from slsg.checkpoint import open_run
from slsg.inference import DeployModel
from slsg.model import ModelConfig, build_model


def tiny(backbone: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(backbone=backbone, size=64), "random").eval()


@pytest.fixture(scope="module")
def trained(trained_run, tmp_path_factory):
    """(deploy, its correct ONNX export, the parity frames the export command would use)."""

    deploy = deploy_for_run(trained_run)
    path = tmp_path_factory.mktemp("trained_onnx") / "m.onnx"
    export_onnx(deploy, path, ExportConfig(simplify=False))
    frames, source = parity_frames(64, 8, data=open_run_data(open_run(trained_run).config))
    return deploy, path, frames, source


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_onnx_matches_torch_for_each_backbone(backbone, tmp_path):
    model = tiny(backbone)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, ExportConfig(simplify=False))
    report = check_parity(DeployModel(model).eval(), path, synthetic_frames(4, 64), "synthetic")
    assert report.ok, report.failure()
    assert report.map.max <= 1e-4 and report.scores["score"].order_kept
    assert report.rule_output == "score_slsg" and report.rule_max_abs <= 1e-5  # the SLSG score is the top-k rule


def test_trained_model_passes_with_default_limits(trained):
    deploy, path, frames, source = trained
    assert "training-recipe anomalies" in source  # real good images of the RUN's dataset plus anomalies
    report = check_parity(deploy, path, frames, source)
    assert report.ok, report.failure()
    assert report.map.correlation > 0.9999 and report.map.fraction_over <= 0.001


@pytest.mark.parametrize("bug", ["wrong_normalisation", "wrong_colour_order", "missing_layer"])
def test_each_injected_export_bug_fails_parity(bug, trained, tmp_path):
    deploy, path, frames, source = trained
    broken = tmp_path / f"{bug}.onnx"
    if bug == "missing_layer":
        bugs.missing_layer(path, broken)
    else:
        getattr(bugs, bug)(deploy, broken)
    report = check_parity(deploy, broken, frames, source)
    assert not report.ok
    assert report.map.fraction_over > ParityLimits().max_fraction_over, report.to_dict()["map"]
    assert "map pixels differ" in report.failure()


def test_a_few_flipped_pixels_pass_but_a_global_shift_fails():
    """What a kNN tie flip does (a small patch of one map moves by 1e-3) is not what a broken export does."""

    rng = np.random.default_rng(0)
    maps = rng.random((6, 64, 64)).astype(np.float32) * np.linspace(0.2, 1, 6, dtype=np.float32)[:, None, None]
    ref = Outputs(maps, image_score(maps))
    flipped = maps.copy()
    flipped[2, 10:14, 20:24] += 1e-3  # 16 of 24 576 pixels
    tie = compare_outputs(ref, Outputs(flipped, image_score(flipped)), "synthetic")
    assert tie.ok, tie.failure()
    assert tie.map.max == pytest.approx(1e-3, rel=1e-3) and tie.map.p99 == 0
    shifted_maps = maps * 0.97 + 0.01
    shifted = compare_outputs(ref, Outputs(shifted_maps, image_score(shifted_maps)), "synthetic")
    assert not shifted.ok and "map pixels differ" in shifted.failure()


def test_every_score_output_is_compared_and_the_rule_is_checked_on_the_slsg_head():
    maps = np.random.default_rng(1).random((4, 16, 16)).astype(np.float32)

    slsg = image_score(maps)
    fused = np.array([0.2, 0.9, 0.4, 0.6], np.float32)  # not the top-k rule, and need not be
    ref = Outputs(maps, fused, {"slsg": slsg, "global": fused})
    report = compare_outputs(ref, Outputs(maps, fused, {"slsg": slsg, "global": fused[::-1].copy()}), "synthetic")
    assert set(report.scores) == {"score", "score_slsg", "score_global"}
    assert report.rule_output == "score_slsg" and report.rule_max_abs < 1e-6
    assert not report.ok and "score_global" in report.failure()


def test_ranking_ignores_near_ties_but_not_swaps():
    ref = np.array([0.1, 0.5, 0.3], np.float32)
    assert order_kept(ref, ref + 1e-7, gap=1e-6)
    assert not order_kept(ref, np.array([0.1, 0.3, 0.5]), gap=1e-6)
    assert order_kept(np.array([0.2, 0.2 + 1e-5]), np.array([0.2 + 1e-5, 0.2]), gap=1e-4)


def test_dynamic_batch_runs_any_batch_size(tmp_path):
    model = tiny("efficientnet_lite0")
    path = tmp_path / "m.onnx"
    export_onnx(model, path, ExportConfig(simplify=False, dynamic_batch=True))
    report = check_parity(DeployModel(model).eval(), path, synthetic_frames(3, 64, seed=1), "synthetic")
    assert report.ok, report.failure()
    assert report.n_images == 3


def test_parity_catches_a_graph_of_other_weights(tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(tiny("efficientnet_lite0", seed=0), path, ExportConfig(simplify=False))
    other = DeployModel(tiny("efficientnet_lite0", seed=1)).eval()
    report = check_parity(other, path, synthetic_frames(4, 64), "synthetic")
    assert not report.ok


def test_choose_graph_refuses_when_no_graph_passes(tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(tiny("efficientnet_lite0", seed=0), path, ExportConfig(simplify=False))
    other = DeployModel(tiny("efficientnet_lite0", seed=1)).eval()
    with pytest.raises(ExportError, match="parity failed"):
        choose_graph([("exported", path)], other, synthetic_frames(2, 64), "synthetic", ("8.5",), (), [])


def test_opset_outside_range_is_refused():
    with pytest.raises(ExportError, match="opset"):
        ExportConfig(opset=9)


def test_an_export_refused_on_synthetic_frames_says_how_to_check_photos_of_the_product(trained_run, tmp_path):
    run = tmp_path / "moved_run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["root"] = str(tmp_path / "no_longer_here")  # the RUN copied to a machine without its dataset
    (run / "config.json").write_text(json.dumps(config))
    every_export_fails = ParityLimits(max_fraction_over=-1.0)
    with pytest.raises(ExportError, match="synthetic frames") as refused:
        write_bundle(run, tmp_path / "model.slsg", BundleOptions(parity=every_export_fails))
    assert "--parity-images DIR" in str(refused.value)
    assert not (tmp_path / "model.slsg").exists()
