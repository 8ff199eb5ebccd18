"""Pre-training: the pretexts are what they claim, their losses fall, it resumes exactly, and its encoder
file starts `slsg train`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from slsg.cli import app
from slsg.model import ModelConfig
from slsg.model.backbones import build_trunk, load_trunk_weights
from slsg.model.preprocess import InputAdapter, normalization_for
from slsg.pretraining import ENCODER_FILE, PretrainConfig, pretrain
from slsg.pretraining.decoder import PretextNet
from slsg.pretraining.loop import draw_batch, pretext_step, recalibrate_batchnorm, step_generator
from slsg.pretraining.losses import inpainting_losses, ssim_map
from slsg.pretraining.pretext import IGNORE, make_pretext
from slsg.training import TrainConfig, train
from slsg.training.data import load_training_data


def _cfg(**kw) -> PretrainConfig:
    base = {"backbone": "efficientnet_lite0", "size": 64, "grid": 4, "steps": 4, "batch": 4, "init": "random",
            "warmup_steps": 2, "checkpoint_every": 0, "log_every": 1, "device": "cpu"}
    return PretrainConfig(**{**base, **kw})


def _cell_index_image(grid: int, cell: int) -> torch.Tensor:
    """1×3×H×W whose every pixel holds 1 + the index of its cell, so moved content says where it came from."""
    idx = torch.arange(grid * grid, dtype=torch.float32).view(grid, grid) + 1
    return idx.repeat_interleave(cell, 0).repeat_interleave(cell, 1).expand(1, 3, -1, -1).clone()


def test_pretext_hides_cells_and_moved_cells_carry_their_origin():
    grid, cell = 4, 8
    x = _cell_index_image(grid, cell)
    batch = make_pretext(x, grid, 0.25, 0.5, torch.Generator().manual_seed(3))
    values = batch.inputs[0, 0, ::cell, ::cell].reshape(-1)  # one pixel per cell
    hidden = batch.hidden[0, 0, ::cell, ::cell].reshape(-1).bool()
    assert int(hidden.sum()) == 4 and torch.all(values[hidden] == 0)
    assert torch.all(batch.origin[0][hidden] == IGNORE)
    visible = ~hidden
    assert torch.equal(values[visible] - 1, batch.origin[0][visible].float())
    assert int(batch.moved.sum()) >= 2
    assert torch.all(batch.origin[0][batch.moved[0]] != torch.arange(16)[batch.moved[0]])


def test_inpainting_losses_are_zero_for_a_perfect_answer_and_ignore_visible_pixels():
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim_map(target, target), torch.ones(2, 1, 32, 32), atol=1e-4)
    hidden = torch.zeros(2, 1, 32, 32)
    hidden[:, :, :16] = 1
    wrong_outside = target.clone()
    wrong_outside[:, :, 24:] = 0.0  # far from the hidden rows, beyond the SSIM window
    l1, dssim = inpainting_losses(wrong_outside, target, hidden)
    assert float(l1) == pytest.approx(0.0, abs=1e-6) and float(dssim) == pytest.approx(0.0, abs=1e-4)
    l1, dssim = inpainting_losses(torch.zeros_like(target), target, hidden)
    assert float(l1) > 0.3 and float(dssim) > 0.1


def _fixed_losses(net: PretextNet, images: torch.Tensor, cfg: PretrainConfig) -> tuple[float, float]:
    """(inpainting L1 + 1−SSIM, position CE) on the same 4 pretext batches, with batch statistics as in training."""
    adapter = InputAdapter(normalization_for(ModelConfig(backbone=cfg.backbone, size=cfg.size).normalization_name))
    inpaint, position = [], []
    net.train()
    with torch.no_grad():
        for k in range(4):
            gen = step_generator(1234, k)
            _, r = pretext_step(net, adapter, draw_batch(images, cfg.batch, gen), cfg, gen)
            inpaint.append(r.l1 + r.dssim)
            position.append(r.position)
    return float(np.mean(inpaint)), float(np.mean(position))


def test_pretext_losses_fall_on_a_tiny_run(tiny_loco, tmp_path):
    cfg = _cfg(steps=30, lr=3e-3, shuffle_ratio=0.6, w_position=1.0, checkpoint_every=30)
    td = load_training_data(tiny_loco, None, cfg.size, cfg.val_fraction, cfg.seed)
    images = torch.from_numpy(np.stack(td.train_images))
    torch.manual_seed(cfg.seed)  # the same initial network pretrain() builds
    before = _fixed_losses(PretextNet(cfg.backbone, cfg.grid, cfg.decoder_width), images, cfg)
    out = pretrain(tiny_loco, tmp_path / "enc", cfg, progress=False, prepared=td)
    trained = PretextNet(cfg.backbone, cfg.grid, cfg.decoder_width)
    state = load_file(str(out / "pretrain_state.safetensors"))
    trained.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    after = _fixed_losses(trained, images, cfg)
    assert after[0] < 0.8 * before[0], (before, after)
    assert after[1] < before[1], (before, after)
    info = json.loads((out / "pretrain.json").read_text())
    assert info["losses"]["last"]["loss"] < info["losses"]["first"]["loss"]


def test_resume_reaches_the_same_encoder_as_an_uninterrupted_run(tiny_loco, tmp_path):
    straight = pretrain(tiny_loco, tmp_path / "a", _cfg(), progress=False)
    part = pretrain(tiny_loco, tmp_path / "b", _cfg(), progress=False, stop_after=2)
    assert not (part / ENCODER_FILE).exists()
    pretrain(tiny_loco, part, _cfg(), resume=True, progress=False)
    a, b = load_file(str(straight / ENCODER_FILE)), load_file(str(part / ENCODER_FILE))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in (part / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_encoder_file_holds_exactly_the_trunk_keys(tiny_loco, tmp_path, backbone):
    out = pretrain(tiny_loco, tmp_path / "enc", _cfg(backbone=backbone, steps=1, batch=2), progress=False)
    saved = load_file(str(out / ENCODER_FILE))
    trunk = build_trunk(backbone)
    assert set(saved) == set(trunk.state_dict())
    assert load_trunk_weights(trunk, backbone, out / ENCODER_FILE) == f"file:{ENCODER_FILE}"


def test_encoder_weights_round_trip_into_slsg_train(tiny_loco, tmp_path):
    enc = pretrain(tiny_loco, tmp_path / "enc", _cfg(steps=2), progress=False) / ENCODER_FILE
    run = train(tiny_loco, tmp_path / "run", ModelConfig(backbone="efficientnet_lite0", size=64),
                TrainConfig(steps=1, batch=2, encoder_weights=str(enc), checkpoint_every=0), progress=False)
    model = load_file(str(run / "model.safetensors"))
    saved = load_file(str(enc))
    for k, v in saved.items():  # the encoder is frozen and its BatchNorm in eval mode: it must arrive unchanged
        assert torch.equal(model[f"encoder.{k}"], v), k
    assert json.loads((run / "config.json").read_text())["train"]["encoder_weights"] == str(enc)


def test_batchnorm_recalibration_gives_the_clean_image_statistics():
    trunk = build_trunk("efficientnet_lite0")
    adapter = InputAdapter(normalization_for("half"))
    images = torch.randint(0, 256, (6, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    recalibrate_batchnorm(trunk, adapter, images, batch=3, device=torch.device("cpu"))
    with torch.no_grad():
        stem = trunk._conv_stem(trunk._pad_stem(adapter(images)))
    assert torch.allclose(trunk._bn0.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-4)
    assert trunk._bn0.momentum == pytest.approx(0.01)


def test_cli_names_what_is_wrong(tiny_loco, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["pretrain", str(tiny_loco), "-o", str(tmp_path / "enc.safetensors")])
    assert bad.exit_code == 2 and "ENCODER is a folder" in bad.output
    args = ["pretrain", str(tiny_loco), "-o", str(tmp_path / "enc"), "--backbone", "efficientnet_lite0", "--size",
            "64", "--grid", "4", "--steps", "1", "--batch", "2", "--init", "random", "--quiet", "--preview"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "enc" / "preview.png").is_file() and "--encoder-weights" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
