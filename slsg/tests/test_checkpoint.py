"""RUN folders round-trip; damaged or foreign weights are refused with a message, never unpickled."""

from __future__ import annotations

import pytest
import torch

from slsg.checkpoint import CheckpointError, load_run, save_run
from slsg.model import ModelConfig, build_model, weights
from slsg.model.backbones import load_trunk_weights
from slsg.model.weights import WeightsError


@pytest.fixture
def run_dir(tmp_path):
    model = build_model(ModelConfig(backbone="efficientnet_lite0", size=64))
    save_run(tmp_path / "run", model, {"threshold": {"value": 0.5, "false_reject_rate": 0.01, "n_good": 3}})
    return tmp_path / "run", model


def test_run_round_trips_weights_and_config(run_dir):
    root, model = run_dir
    run, loaded = load_run(root)
    assert run.model_config == model.cfg and run.threshold.value == 0.5
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_truncated_safetensors_is_refused(run_dir):
    root, _ = run_dir
    data = (root / "model.safetensors").read_bytes()
    (root / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_run(root)


def test_weights_of_another_architecture_are_refused(run_dir):
    root, _ = run_dir
    cfg = (root / "config.json").read_text().replace("efficientnet_lite0", "resnet18")
    (root / "config.json").write_text(cfg)
    with pytest.raises(CheckpointError, match="does not match this architecture"):
        load_run(root)


def test_encoder_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, path)
    with pytest.raises(WeightsError, match="another architecture"):
        load_trunk_weights(build_model(ModelConfig(size=64)).encoder, "resnet18", path)


def test_offline_resnet18_without_file_names_both_ways_out(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SLSG_WEIGHTS_DIR", raising=False)

    with pytest.raises(WeightsError) as err:
        weights.resnet18_imagenet_file(download=False)
    assert "--encoder-weights" in str(err.value) and weights.RESNET18_URL in str(err.value)


def test_efficientnet_lite0_imagenet_weights_load_offline():
    model = build_model(ModelConfig(backbone="efficientnet_lite0", size=64), "imagenet")
    assert model.encoder._conv_stem.weight.abs().sum() > 0
