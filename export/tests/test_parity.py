"""ONNX Runtime reproduces PyTorch (maps ≤ 1e-4, same ranking) for both backbones; a wrong graph is caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.onnx_export import ExportConfig, ExportError, export_onnx
from export.parity import check_parity, same_ranking, synthetic_frames
from slsg.inference import DeployModel
from slsg.model import ModelConfig, build_model


def tiny(backbone: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(backbone=backbone, size=64), "random").eval()


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_onnx_matches_torch_for_each_backbone(backbone, tmp_path):
    model = tiny(backbone)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, ExportConfig(simplify=False))
    report = check_parity(DeployModel(model).eval(), path, synthetic_frames(4, 64), "synthetic")
    assert report.ok, report.failure()
    assert report.max_abs_map <= 1e-4 and report.ranking_equal
    assert report.max_abs_score_rule <= 1e-5  # the in-graph score is the shared top-k rule


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
    assert "map difference" in report.failure()


def test_choose_graph_refuses_when_no_graph_passes(tmp_path):
    from export.bundle_writer import choose_graph

    path = tmp_path / "m.onnx"
    export_onnx(tiny("efficientnet_lite0", seed=0), path, ExportConfig(simplify=False))
    other = DeployModel(tiny("efficientnet_lite0", seed=1)).eval()
    with pytest.raises(ExportError, match="parity failed"):
        choose_graph([("exported", path)], other, synthetic_frames(2, 64), "synthetic", ("8.5",), (), [])


def test_ranking_ignores_ties_but_not_swaps():
    ref = np.array([0.1, 0.5, 0.3], np.float32)
    assert same_ranking(ref, ref + 1e-7)
    assert not same_ranking(ref, np.array([0.1, 0.3, 0.5]))
    assert same_ranking(np.array([0.2, 0.2 + 1e-8]), np.array([0.2 + 1e-8, 0.2]))


def test_opset_outside_range_is_refused():
    with pytest.raises(ExportError, match="opset"):
        ExportConfig(opset=9)
