"""The global-context head and the fused score: fit on good images, one score in PyTorch and in ONNX Runtime,
non-square inputs end to end, and `--head slsg` keeping the seed's score."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.scoring import image_score, threshold_from_good_scores
from export.job import BundleOptions
from export.onnx_export import ExportConfig
from export.parity import synthetic_frames
from export.pipeline import write_bundle
from slsg.cli import app
from slsg.data import open_dataset
from slsg.evaluation import score_samples
from slsg.heads import FusionConfig, HeadNorm, ScoreFusion, fuse_numpy
from slsg.heads.fit import descriptors
from slsg.heads.fusion import SPREAD_QUANTILE
from slsg.heads.global_context import (
    GlobalContextHead,
    GlobalHeadConfig,
    cross_fitted_distances,
    gaussian_from_descriptors,
    grid_cells,
    mahalanobis,
)
from slsg.inference import TorchPredictor, load_deploy
from slsg.model import ModelConfig, build_model
from slsg.model.backbones import Features
from slsg.training import TrainConfig, train
from slsg.training.data import load_training_data, split_validation
from slsg.training.refit import global_head_config

NON_SQUARE = ModelConfig(backbone="efficientnet_lite0", size=(96, 64))


def test_gaussian_separates_a_shifted_cluster_with_fewer_images_than_dimensions() -> None:
    rng = np.random.default_rng(0)
    d, n, rank = 200, 60, 20  # fewer good images than dimensions: the sample covariance is singular
    basis = rng.normal(size=(rank, d))

    def good(m: int) -> np.ndarray:  # good images vary a lot along a few directions, little elsewhere
        return rng.normal(size=(m, rank)) @ basis + 0.05 * rng.normal(size=(m, d))

    stats, shrinkage, frozen = gaussian_from_descriptors(good(n))
    assert 0.0 < shrinkage < 1.0 and frozen == 0
    precision = stats["whiten"] @ stats["whiten"].T
    assert np.isfinite(precision).all() and np.linalg.cond(precision) < 1e8  # well-conditioned
    held_out = good(40)
    spread = held_out.std(axis=0)
    shifted = held_out + 0.3 * spread * rng.choice([-1.0, 1.0], size=d)  # the whole cluster moved by 0.3 σ
    s_good, s_bad = mahalanobis(stats, held_out), mahalanobis(stats, shifted)
    assert np.mean(s_bad[:, None] > s_good[None, :]) > 0.95  # AUROC of the separation
    fresh = mahalanobis(stats, good(40))
    assert abs(np.median(fresh) - np.median(s_good)) < 0.2 * np.median(s_good)  # fresh goods stay close


def test_cross_fitted_distances_are_those_of_new_good_images_not_of_the_fit_images() -> None:
    rng = np.random.default_rng(3)
    d, n, rank = 120, 90, 30  # fewer images than dimensions, as with 301 images and 816 dimensions
    basis = rng.normal(size=(rank, d))

    def good(m: int) -> np.ndarray:
        return rng.normal(size=(m, rank)) @ basis + 0.1 * rng.normal(size=(m, d))

    train, fresh = good(n), good(400)
    stats, _, _ = gaussian_from_descriptors(train)
    in_sample, new = np.median(mahalanobis(stats, train)), np.median(mahalanobis(stats, fresh))
    crossed = np.median(cross_fitted_distances(train))
    assert in_sample < 0.9 * new  # the fit's own images look more normal than new ones (measured 0.84)
    assert 0.95 * new < crossed < 1.25 * new  # cross-fitted: like new images (a little larger: 4/5 of the data)
    np.testing.assert_array_equal(cross_fitted_distances(train), cross_fitted_distances(train))  # seeded
    with pytest.raises(ValueError, match="at least 4"):
        cross_fitted_distances(train[:3])


def test_the_heads_distance_in_torch_is_its_numpy_twin() -> None:
    rng = np.random.default_rng(4)
    head = GlobalContextHead("efficientnet_lite0", None)
    x = rng.normal(size=(3 * head.dims,)).reshape(3, head.dims) * 0.1
    stats, _, _ = gaussian_from_descriptors(rng.normal(size=(40, head.dims)) * 0.1)
    head.set_gaussian(**stats)
    got = head.distance(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, mahalanobis(stats, x), rtol=1e-4)


def _features(rng: np.random.Generator, n: int, defect: float = 0.0) -> Features:
    """Lite0-shaped maps of n good images at 256² (f2 constant, f3 and f4 noise); `defect` raises one 2×2 corner of f4
    (and the matching 4×4 of f3) by that much on every channel: a defect on 1/64 of the image."""
    def maps(c: int, side: int, size: int) -> torch.Tensor:
        m = 0.3 * rng.normal(size=(n, c, side, side))
        m[:, :, :size, :size] += defect
        return torch.as_tensor(m, dtype=torch.float32)

    empty = torch.zeros(n, 1, 1, 1)
    return Features(empty, empty, torch.zeros(n, 24, 32, 32), maps(40, 32, 4), maps(112, 16, 2))


def test_a_defect_in_one_cell_of_the_image_stands_out_in_the_regional_descriptor() -> None:
    """A defect on 1/64 of the image moves the whole image's mean by 1/64 of its size and its grid cell's by 1/16:
    with the cells' means in the descriptor the head ranks such images above good ones better than with the whole
    image's means alone."""
    rng = np.random.default_rng(5)
    aurocs = {}
    for grid in (0, 2):
        head = GlobalContextHead("efficientnet_lite0", GlobalHeadConfig(context=False, grid=grid))
        with torch.no_grad():
            stats, _, _ = gaussian_from_descriptors(head.descriptor(_features(rng, 200)).double().numpy())
            good = mahalanobis(stats, head.descriptor(_features(rng, 100)).double().numpy())
            bad = mahalanobis(stats, head.descriptor(_features(rng, 100, defect=0.3)).double().numpy())
        aurocs[grid] = float(np.mean(bad[:, None] > good[None, :]))
        assert head.dims == 24 + 40 + 112 + 112 + grid ** 2 * (40 + 112)
    assert aurocs[2] > 0.85 and aurocs[2] > aurocs[0] + 0.08, aurocs  # measured 0.87 against 0.76


def test_a_head_saved_before_the_grid_existed_keeps_its_descriptor() -> None:
    old = GlobalHeadConfig.from_dict({"context": True, "deepest_max": True, "estimator": "ledoit_wolf"})
    assert old.grid == 0
    gridded = GlobalHeadConfig(grid=2)
    assert GlobalHeadConfig.from_dict(gridded.to_dict()) == gridded
    assert GlobalHeadConfig.from_dict({"context": True, "regions": 2}).grid == 2  # the name its first release saved
    # a grid saved before `grid_maps` existed pooled f3 and f4: its descriptor keeps both
    assert GlobalHeadConfig.from_dict({"context": True, "grid": 2}).grid_maps == ("f3", "f4")


def test_every_grid_cell_has_a_row_and_a_column_even_on_a_map_smaller_than_the_grid() -> None:
    for side in (1, 2, 3, 16):
        cells = grid_cells(torch.zeros(1, 1, side, side + 1), 3)
        assert len(cells) == 9 and all(c.shape[2] >= 1 and c.shape[3] >= 1 for c in cells)
    halves = grid_cells(torch.arange(16.0).reshape(1, 1, 4, 4), 2)
    assert [c.flatten().tolist() for c in halves][0] == [0.0, 1.0, 4.0, 5.0]  # row by row, top left first


def test_a_constant_feature_is_frozen_not_an_infinite_distance() -> None:
    rng = np.random.default_rng(1)
    good = rng.normal(size=(30, 8))
    good[:, 3] = 2.5
    stats, _, frozen = gaussian_from_descriptors(good)
    probe = good[:2].copy()
    probe[:, 3] = 7.0
    assert frozen == 1 and np.isfinite(mahalanobis(stats, probe)).all()


def test_fusion_rule_in_the_graph_equals_its_numpy_twin_and_one_head_is_the_raw_score() -> None:
    rng = np.random.default_rng(2)
    heads = {"slsg": rng.uniform(0.2, 0.9, 16), "global": rng.uniform(20, 60, 16)}
    norms = {h: HeadNorm.from_good_scores(v[:8]) for h, v in heads.items()}
    for rule in ("mean", "max"):
        cfg = FusionConfig(("slsg", "global"), rule, norms)
        graph = ScoreFusion(cfg)({h: torch.tensor(v, dtype=torch.float32) for h, v in heads.items()}).numpy()
        np.testing.assert_allclose(graph, fuse_numpy(cfg, heads), rtol=1e-5, atol=1e-5)
    single = FusionConfig(("slsg",))
    np.testing.assert_array_equal(fuse_numpy(single, heads), heads["slsg"].astype(np.float32))
    with pytest.raises(ValueError, match="normalisation for each head"):
        FusionConfig(("slsg", "global"), "mean", {"slsg": norms["slsg"]})


def _cfg(head: str) -> TrainConfig:
    return TrainConfig(steps=3, batch=2, encoder_weights="imagenet", checkpoint_every=0, head=head)


@pytest.fixture(scope="module")
def fused_run(tiny_loco, tmp_path_factory):
    return train(tiny_loco, tmp_path_factory.mktemp("fused") / "run", NON_SQUARE, _cfg("both"), progress=False)


def test_an_images_descriptor_does_not_depend_on_its_batch_and_fitting_leaves_the_context_unchanged() -> None:
    model = build_model(ModelConfig(backbone="efficientnet_lite0", size=64))
    head = GlobalContextHead("efficientnet_lite0")
    before = {k: v.clone() for k, v in head.context.state_dict().items()}
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    together = descriptors(model, head, images, batch=4)
    alone = descriptors(model, head, images[:1], batch=1)
    np.testing.assert_allclose(alone[0], together[0], rtol=1e-4, atol=1e-5)  # batch statistics would differ
    for k, v in head.context.state_dict().items():
        assert torch.equal(v, before[k]), f"fitting changed the frozen context's {k}"


def test_a_head_that_barely_varies_cannot_amplify_float_rounding_into_the_fused_score() -> None:
    nearly_constant = 104.77 + np.linspace(0, 3e-6, 20)  # an untrained tiny model's global head
    norm = HeadNorm.from_good_scores(nearly_constant)
    assert norm.floored and norm.scale >= 104.77 * 2.0**-10
    rounding = 1.5e-5  # PyTorch vs ONNX Runtime on the same image, measured
    assert rounding / norm.scale < 1e-3
    informative = np.linspace(10.0, 14.0, 21)
    spread = HeadNorm.from_good_scores(informative)  # an informative head keeps its own spread: median to tail
    assert not spread.floored and spread.scale == pytest.approx(np.quantile(informative, SPREAD_QUANTILE) - 12.0)


def test_a_fused_non_square_run_exports_and_the_runtime_gives_the_torch_scores(fused_run, tmp_path) -> None:
    config = json.loads((fused_run / "config.json").read_text())
    assert config["model"]["size"] == [96, 64] and config["scores"]["heads"] == ["slsg", "global"]
    assert (fused_run / "global_head.safetensors").is_file()
    # the global head is normalised on the 4 validation images and the 12 training images scored cross-fitted; the
    # threshold rests on the validation images, the only ones every head has not seen
    assert config["scores"]["norms"]["global"]["n_good"] == 16 and config["threshold"]["n_good"] == 4
    bundle = load_bundle(write_bundle(fused_run, tmp_path / "m.slsg",
                                      BundleOptions(parity_count=2, export=ExportConfig(simplify=False))).root)
    assert bundle.size == (96, 64) and set(bundle.manifest.outputs) == {"anomaly_map", "score", "score_slsg",
                                                                           "score_global"}
    assert bundle.manifest.scores["score"]["heads"] == ["slsg", "global"]
    frames = synthetic_frames(3, (96, 64), seed=4)
    ort = select_backend(bundle, "onnx").run(frames)
    ref = TorchPredictor(load_deploy(fused_run))(frames)
    assert ort.maps.shape == (3, 96, 64) and set(ort.heads) == {"slsg", "global"}
    np.testing.assert_allclose(ort.score, ref.score, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ort.heads["global"], ref.heads["global"], rtol=1e-4)
    np.testing.assert_allclose(ort.heads["slsg"], image_score(ort.maps), atol=1e-5)
    fusion = FusionConfig.from_dict(config["scores"])
    np.testing.assert_allclose(ort.score, fuse_numpy(fusion, ort.heads), rtol=1e-4, atol=1e-4)


def test_fit_head_on_a_surface_pools_f4s_cells_and_the_graph_gives_its_scores(fused_run, tiny_loco,
                                                                              tmp_path) -> None:
    """`slsg fit-head RUN DATA --global-grid auto` on a RUN whose good images show a surface: the global head pools
    f4 over a 4×4 grid too, the choice is kept in the RUN, and the exported graph computes the same scores as
    PyTorch."""
    run = tmp_path / "run"
    shutil.copytree(fused_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "product": {"object": False, "moves": False,
                                                                       "object_share": 0.0}}))
    result = CliRunner().invoke(app, ["fit-head", str(run), str(tiny_loco), "--head", "both", "--global-grid", "auto"])
    assert result.exit_code == 0, result.output
    meta = json.loads((run / "global_head.json").read_text())
    assert meta["config"]["grid"] == 4 and meta["config"]["grid_maps"] == ["f4"]
    assert meta["dims"] == 816 + 16 * 112
    assert json.loads((run / "config.json").read_text())["train"]["global_grid"] == "auto"
    bundle = load_bundle(write_bundle(run, tmp_path / "m.slsg",
                                      BundleOptions(parity_count=2, export=ExportConfig(simplify=False))).root)
    frames = synthetic_frames(3, (96, 64), seed=5)
    ort, ref = select_backend(bundle, "onnx").run(frames), TorchPredictor(load_deploy(run))(frames)
    np.testing.assert_allclose(ort.heads["global"], ref.heads["global"], rtol=1e-4)
    np.testing.assert_allclose(ort.score, ref.score, rtol=1e-4, atol=1e-4)


def test_auto_grid_follows_what_the_good_images_show(tiny_loco) -> None:
    """`--global-grid auto`: cells on a surface, none on an object (the saved profile, or one made from the good
    images where the RUN has none); a size given is kept whatever the product."""
    td = load_training_data(tiny_loco, None, (64, 64), 0.2, 0)
    auto, two = TrainConfig(), TrainConfig(global_grid=2)
    surface, an_object = {"object": False}, {"object": True}
    assert global_head_config(auto, surface, td, (64, 64)).grid == 4
    assert global_head_config(auto, an_object, td, (64, 64)).grid == 0
    assert global_head_config(two, an_object, td, (64, 64)).grid == 2
    rng = np.random.default_rng(0)
    grain = SimpleNamespace(train_images=[rng.integers(90, 160, (64, 64, 3), dtype=np.uint8) for _ in range(8)])
    disc = cv2.circle(np.full((64, 64, 3), 20, np.uint8), (32, 32), 18, (200, 180, 160), -1)
    discs = SimpleNamespace(train_images=[cv2.GaussianBlur(disc, (9, 9), 3)] * 8)  # soft edges, as a lens gives
    assert global_head_config(auto, None, grain, (64, 64)).grid == 4
    assert global_head_config(auto, None, discs, (64, 64)).grid == 0
    with pytest.raises(ValueError, match="--global-grid"):
        TrainConfig(global_grid="big")


def test_head_slsg_keeps_the_seed_score_and_threshold(tiny_loco, tmp_path) -> None:
    run = train(tiny_loco, tmp_path / "run", ModelConfig(backbone="efficientnet_lite0", size=64), _cfg("slsg"),
                progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["scores"]["heads"] == ["slsg"] and not (run / "global_head.safetensors").exists()
    _, val = split_validation(open_dataset(tiny_loco)[0], 0.1, 0)
    out = score_samples(TorchPredictor(load_deploy(run)), val, (64, 64))
    assert set(out.heads) == {"slsg"}
    np.testing.assert_allclose(out.score, image_score(out.maps), atol=1e-6)  # the reference's top-100 mean
    expected = threshold_from_good_scores(image_score(out.maps), 0.01).value
    assert config["threshold"]["value"] == pytest.approx(expected, rel=1e-6)
