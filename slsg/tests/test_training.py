"""Training follows the recipe, resumes to the very same weights, and runs as 2 gloo processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from slsg.cli import app
from slsg.model import ModelConfig
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


def test_training_writes_a_run_with_a_validation_threshold(tiny_loco, tmp_path):
    out = train(tiny_loco, tmp_path / "run", TINY, _cfg(), progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["threshold"]["source"] == "validation" and config["threshold"]["n_good"] == 4
    assert config["data"]["n_images"] == 12 and len(config["data"]["sha256"]) == 64
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert losses and all(v == v for v in losses)


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
    import shutil

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
