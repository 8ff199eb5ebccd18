"""Training learns (a tiny model separates a trivially separable set, its loss falls), follows the recipe, resumes
to the very same weights, and runs as 2 gloo processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from edge_runtime.scoring import image_score
from edge_runtime.statistics import auroc
from slsg.checkpoint import load_run
from slsg.cli import app
from slsg.inference import TorchPredictor
from slsg.model import ModelConfig, build_model
from slsg.training import TrainConfig, train
from slsg.training.loss import cosine_lr, focal_on_probabilities

TINY = ModelConfig(backbone="efficientnet_lite0", size=64)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 4, "batch": 2, "encoder_weights": "random", "checkpoint_every": 0, **kw})


def test_cosine_schedule_runs_from_lr_to_zero():
    assert cosine_lr(0, 7001, 0.04) == pytest.approx(0.04)
    assert cosine_lr(3500, 7000, 0.04) == pytest.approx(0.02)
    assert cosine_lr(7001, 7001, 0.04) == pytest.approx(0.0, abs=1e-12)


def test_focal_loss_matches_hand_computed_value():
    prob = torch.tensor([0.8, 0.2]).view(1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, 1)
    pt = (1 - 1e-5) * 0.8 + 1e-5 * 0.2 + 1e-5
    expected = -((1 - pt) ** 4) * torch.log(torch.tensor(pt))
    assert focal_on_probabilities(prob, target, 4.0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_sets_its_threshold_on_validation_images_and_normalises_fitted_heads_on_cross_fitted_ones(
        tiny_loco, tmp_path):
    out = train(tiny_loco, tmp_path / "run", TINY, _cfg(), progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["threshold"]["source"] == "4 validation images" and config["threshold"]["n_good"] == 4
    norms = config["scores"]["norms"]
    assert norms["slsg"]["n_good"] == 4  # SLSG: the images it never trained on, only
    assert norms["global"]["n_good"] == norms["local"]["n_good"] == 4 + 12  # fitted heads: + cross-fitted training
    assert "cross-fitted" in config["scores"]["source"]
    assert config["data"]["n_images"] == 12 and len(config["data"]["sha256"]) == 64
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4]  # log_every 10: the last step is always logged
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)


def _separable_set(root, size: int = 64, seed: int = 0):
    """Good: one flat colour with faint noise. Defect: the same with a square of random pixels (a quarter side)."""

    rng = np.random.default_rng(seed)

    def good() -> np.ndarray:
        im = np.full((size, size, 3), (110, 120, 130), np.float32) + rng.normal(0, 3, (size, size, 3))
        return np.clip(im, 0, 255).astype(np.uint8)

    def defect() -> np.ndarray:
        im, s = good(), size // 4
        y, x = rng.integers(0, size - s, 2)
        im[y:y + s, x:x + s] = rng.integers(0, 256, (s, s, 3))
        return im

    test = {"good": [], "defect": []}
    for split, n, make in (("train/good", 16, good), ("test/good", 10, good), ("test/defect", 10, defect)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            im = make()
            cv2.imwrite(str(root / split / f"{i:03d}.png"), im)
            if split.startswith("test"):
                test[split.split("/")[1]].append(im)
    return np.stack(test["good"] + test["defect"]), np.r_[np.zeros(10), np.ones(10)]


@pytest.mark.slow
def test_a_tiny_model_learns_to_separate_a_trivially_separable_set(tmp_path):
    """200 steps at 64 px (≈ 12 s on one thread): image AUROC ≥ 0.9 where the untrained model is near chance, and
    the loss of the last 50 steps is well below that of the first 50."""

    images, labels = _separable_set(tmp_path / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core CI machine one thread is several times faster than two
    try:
        torch.manual_seed(0)
        untrained = auroc(image_score(TorchPredictor(build_model(TINY, "imagenet"))(images).maps), labels)
        cfg = TrainConfig(steps=200, batch=2, encoder_weights="imagenet", checkpoint_every=0, log_every=1,
                          device="cpu")
        out = train(tmp_path / "data", tmp_path / "run", TINY, cfg, progress=False)
        trained = auroc(image_score(TorchPredictor(load_run(out)[1])(images).maps), labels)  # the SLSG map
    finally:
        torch.set_num_threads(threads)
    losses = np.array([json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()])
    assert len(losses) == 200 and np.isfinite(losses).all()
    assert losses[-50:].mean() < 0.75 * losses[:50].mean(), (losses[:50].mean(), losses[-50:].mean())
    assert untrained < 0.9, f"the set is separable without training (AUROC {untrained:.2f}): the test proves nothing"
    assert trained >= 0.9, f"image AUROC {trained:.2f} after 200 steps"


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tiny_loco, tmp_path):
    straight = train(tiny_loco, tmp_path / "a", TINY, _cfg(), progress=False)
    interrupted = train(tiny_loco, tmp_path / "b", TINY, _cfg(), progress=False, stop_after=2)
    assert not (interrupted / "model.safetensors").exists()  # no result before the last step
    train(tiny_loco, interrupted, TINY, _cfg(), resume=True, progress=False)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(interrupted / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_with_another_recipe_is_refused(tiny_loco, tmp_path):
    train(tiny_loco, tmp_path / "run", TINY, _cfg(), progress=False, stop_after=1)
    result = CliRunner().invoke(app, ["train", str(tiny_loco), "-o", str(tmp_path / "run"), "--backbone",
                                      "efficientnet_lite0", "--size", "64", "--steps", "9", "--batch", "2",
                                      "--encoder-weights", "random", "--resume", "--quiet"])
    assert result.exit_code == 2 and "another recipe" in result.output


def test_two_gloo_processes_train_one_model(tiny_loco, tmp_path):
    out = tmp_path / "ddp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "-m", "slsg", "train", str(tiny_loco), "-o", str(out), "--backbone", "efficientnet_lite0", "--size", "64",
           "--steps", "3", "--batch", "1", "--encoder-weights", "random", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 3
    assert (out / "model.safetensors").is_file()


def test_a_corrupt_training_image_is_named_on_screen_and_in_the_run(tiny_loco, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_loco, data)
    bad = sorted((data / "train" / "good").glob("*.png"))[0]
    bad.write_bytes(b"not a png at all")
    lines: list[str] = []
    out = train(data, tmp_path / "run", TINY, _cfg(steps=1, head="slsg"), progress=False, say=lines.append)
    assert any(bad.name in line for line in lines) and any("1 file(s) left out" in line for line in lines)
    assert any("--texture-dir" in line for line in lines) is False  # the synthetic preset is generic: no DTD note
    skipped = json.loads((out / "config.json").read_text())["data"]["skipped"]
    assert [s["path"] for s in skipped] == [str(bad)]


def test_a_loco_preset_with_built_in_textures_warns_once_about_dtd(tiny_loco, tmp_path):
    lines: list[str] = []
    train(tiny_loco, tmp_path / "run", TINY, _cfg(steps=1, head="slsg", preset="juice_bottle"), progress=False,
          stop_after=1, say=lines.append)
    assert sum("--texture-dir" in line for line in lines) == 1


def test_train_prints_progress_lines_when_stdout_is_not_a_terminal(tiny_loco, tmp_path, monkeypatch):
    """Under nohup/systemd/`> train.log` the bar draws nothing: plain lines carry step, loss, rate and ETA."""
    monkeypatch.setenv("SLSG_PROGRESS_EVERY", "0")  # every step, so three steps show the cadence
    result = CliRunner().invoke(app, ["train", str(tiny_loco), "-o", str(tmp_path / "run"), "--backbone",
                                      "efficientnet_lite0", "--size", "64", "--steps", "3", "--batch", "2",
                                      "--encoder-weights", "random"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("train: ")]
    heads = [f"train: {i}/3 steps ({p}%)" for i, p in enumerate((0, 33, 67, 100))]
    assert [ln.split(" · ")[0] for ln in lines] == heads
    assert all(" · loss " in ln and " steps/s · elapsed " in ln and " · ETA " in ln for ln in lines)
    assert lines[-1].endswith("ETA 0:00:00") and "━" not in result.output
