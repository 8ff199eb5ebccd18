"""The local patch head: its coreset, what it catches that the global head cannot, one score in PyTorch and ONNX
Runtime, and a threshold resting only on scores of images no head has seen."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.heads.memory import greedy_coreset, nearest_distances
from export.job import BundleOptions
from export.onnx_export import ExportConfig
from export.parity import synthetic_frames
from export.pipeline import write_bundle
from slsg.data import open_dataset
from slsg.data.synthetic_scene import make_image
from slsg.evaluation import score_samples
from slsg.heads.fit import fit_heads
from slsg.heads.fusion import HeadNorm
from slsg.heads.local_patch import LocalHeadConfig, LocalPatchHead
from slsg.inference import DeployModel, TorchPredictor, load_deploy
from slsg.model import ModelConfig, build_model
from slsg.training import TrainConfig, train
from slsg.training.data import split_validation


def test_coreset_picks_the_farthest_point_first_and_covers_every_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [30, 30]], np.float32)
    points = np.concatenate([c + 0.1 * rng.standard_normal((200, 2)) for c in centres]).astype(np.float32)
    core = greedy_coreset(points, 5, projection=0, seed=1)
    picked = points[core.indices]
    # one pick per cluster: the rare far cluster is covered, which a random sample of 5 mostly misses
    assert sorted(np.argmin(((picked[:, None] - centres[None]) ** 2).sum(-1), axis=1)) == [0, 1, 2, 3, 4]
    # the farthest-point property: every pick after the first is the point farthest from the picks before it
    for k in range(1, 5):
        d = np.min(((points[:, None] - picked[None, :k]) ** 2).sum(-1), axis=1)
        assert core.indices[k] == int(np.argmax(d))
    # the radius after the last pick is the cover's: every point lies within it of a pick
    cover = np.sqrt(np.min(((points[:, None] - picked[None]) ** 2).sum(-1), axis=1)).max()
    assert core.radius[-1] == pytest.approx(cover, rel=1e-4)
    assert np.all(np.diff(core.radius) <= 1e-6)  # more picks never cover worse


def test_the_local_head_flags_small_scratches_the_global_head_misses_and_its_map_shows_where() -> None:
    size = 128
    rng = np.random.default_rng(0)
    model = build_model(ModelConfig(backbone="efficientnet_lite0", size=size), "imagenet").eval()
    train_images = [make_image(size, rng)[0] for _ in range(40)]
    validation = [make_image(size, rng)[0] for _ in range(30)]
    scratched = [make_image(size, rng, ("scratch",)) for _ in range(20)]  # a thin scratch on a tray of parts
    fitted = fit_heads(model, train_images, ("global", "local"), local_cfg=LocalHeadConfig(memory=1024))
    predict = TorchPredictor(DeployModel(model, fitted.global_head, None, fitted.local_head))
    good, bad = predict(np.stack(validation)), predict(np.stack([im for im, _ in scratched]))
    flagged = {}
    for h in ("global", "local"):  # beyond each head's own good 1 % tail, as the fused score judges them
        norm = HeadNorm.from_good_scores(good.heads[h])
        flagged[h] = (bad.heads[h] - norm.location) / norm.scale > 1.0
    assert flagged["local"].sum() >= 16  # of 20
    assert not (flagged["global"] & ~flagged["local"]).any()  # it catches every scratch the global head catches
    assert (flagged["local"] & ~flagged["global"]).any()  # and at least one the global head misses
    near = 0
    for (_, [(_, mask)]), local_map in zip(scratched, bad.head_maps["local"]):
        peak = np.unravel_index(np.argmax(local_map), local_map.shape)
        ys, xs = np.nonzero(mask)
        near += np.min(np.hypot(ys - peak[0], xs - peak[1])) <= 12  # within 1.5 patches of the scratch
    assert near >= 16  # the map shows where


def test_the_heads_distance_in_the_graph_is_the_one_fitting_scores_with() -> None:
    rng = np.random.default_rng(1)
    memory = rng.standard_normal((50, 40)).astype(np.float32)
    head = LocalPatchHead("efficientnet_lite0", LocalHeadConfig(layers=("f3",)), memory_size=50)
    head.set_memory(memory)
    patches = rng.standard_normal((2, 40, 4, 4)).astype(np.float32)
    torch_d = head.distances(torch.from_numpy(patches)).numpy().ravel()
    rows = patches.transpose(0, 2, 3, 1).reshape(-1, 40)
    np.testing.assert_allclose(torch_d, nearest_distances(memory, rows), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(nearest_distances(memory, memory), 0.0, atol=1e-2)  # its own rows are at 0


@pytest.fixture(scope="module")
def all_heads_run(tiny_loco, tmp_path_factory):
    cfg = TrainConfig(steps=3, batch=2, checkpoint_every=0, head="all")
    return train(tiny_loco, tmp_path_factory.mktemp("local") / "run", ModelConfig(backbone="efficientnet_lite0",
                                                                                   size=(96, 64)), cfg, progress=False)


def test_the_threshold_rests_only_on_scores_of_images_no_head_has_seen(all_heads_run, tiny_loco) -> None:
    config = json.loads((all_heads_run / "config.json").read_text())
    assert config["scores"]["heads"] == ["slsg", "global", "local"]
    reference = config["good_reference"]
    _, val = split_validation(open_dataset(tiny_loco)[0], 0.2, 0)
    out = score_samples(TorchPredictor(load_deploy(all_heads_run)), val, (96, 64))
    # the decision scores the threshold is set from are the validation images' (every head out of sample) …
    np.testing.assert_allclose(reference["score"], out.score, rtol=1e-4, atol=1e-5)
    assert config["threshold"]["n_good"] == len(val)
    # … SLSG's reference holds its validation scores only, never those of the images it was trained on …
    np.testing.assert_allclose(reference["heads"]["slsg"], out.heads["slsg"], rtol=1e-4)
    # … and a fitted head's holds the validation images plus each training image scored by a fit without it
    n_train = config["local_head"]["n_images"]
    assert len(reference["heads"]["local"]) == len(val) + n_train
    np.testing.assert_allclose(reference["heads"]["local"][:len(val)], out.heads["local"], rtol=1e-4)


def test_the_fused_score_and_the_local_map_are_the_same_in_pytorch_and_onnx_runtime(all_heads_run, tmp_path):
    bundle = load_bundle(write_bundle(all_heads_run, tmp_path / "m.slsg",
                                      BundleOptions(parity_count=2, export=ExportConfig(simplify=False))).root)
    assert {"score_local", "map_local"} <= set(bundle.manifest.outputs)
    frames = synthetic_frames(3, (96, 64), seed=4)
    ort = select_backend(bundle, "onnx").run(frames)
    ref = TorchPredictor(load_deploy(all_heads_run))(frames)
    np.testing.assert_allclose(ort.score, ref.score, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ort.heads["local"], ref.heads["local"], rtol=1e-4)
    np.testing.assert_allclose(ort.head_maps["local"], ref.head_maps["local"], rtol=1e-4, atol=1e-3)
