"""An official-layout `.tch` (built here in the reference's naming) imports to identical outputs."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from slsg.cli import app
from slsg.model import ModelConfig, build_model
from slsg.model.official import OfficialImportError, convert_official_state_dict


def _reference_layout(model) -> dict[str, torch.Tensor]:
    """Our weights re-keyed as the reference's ProjectionNet saves them, dead entries included (§1.8)."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("encoder."):
            sd["encoder_segment.resnet18." + k[len("encoder."):]] = v
    for i, dim in enumerate((64, 128, 256)):
        name = f"LKA{dim}"
        for part in ("conv0", "conv_spatial", "conv1"):
            for p in ("weight", "bias"):
                sd[f"{name}.AT.{part}.{p}"] = model.state_dict()[f"skips.{i}.{part}.{p}"]
        sd[f"{name}.p1.weight"] = torch.randn(dim, dim, 1, 1)
        sd[f"{name}.p1.bias"] = torch.randn(dim)
        for p in ("weight", "bias"):
            sd[f"{name}.p2.{p}"] = model.state_dict()[f"skips.{i}.proj.{p}"]
    g = {k[len("graph."):]: v for k, v in model.state_dict().items() if k.startswith("graph.")}
    for k, v in g.items():
        head, rest = k.split(".", 1)
        target = {"fc1": "GCN3.fc1", "fc2": "GCN3.fc2", "fuse": "GCN3.graph_conv.gconv.nn",
                  "value": "GCN3.graph_conv.gconv.f_value", "out_proj": "GCN3.graph_conv.gconv.W"}.get(head)
        if head == "qk":
            sd[f"GCN3.graph_conv.dilated_knn_graph.f_key.{rest}"] = v
            sd[f"GCN3.graph_conv.dilated_knn_graph.f_query.{rest}"] = v.clone()
        else:
            sd[f"{target}.{rest}"] = v
    sd["GCN3.relative_pos"] = model.graph.relative_pos.unsqueeze(0).clone()
    seq = iter(range(100))
    for k, v in model.state_dict().items():
        if k.startswith("aux.body."):
            sd[f"aux0.{next(seq)}.{k.rsplit('.', 1)[1]}"] = v
    seq = iter(range(100))
    for k, v in model.state_dict().items():
        if k.startswith("aux.out."):
            sd[f"aux0_out.{next(seq)}.{k.rsplit('.', 1)[1]}"] = v
    for k, v in model.state_dict().items():
        if k.startswith("decoder."):
            sd["decoder_segment." + k[len("decoder."):]] = v
    sd["decoder_segment.res_bn_relu.0.weight"] = torch.ones(24)
    return sd


@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(3)
    model = build_model(ModelConfig(size=64)).eval()
    for m in model.modules():  # non-trivial BN statistics, as in a trained checkpoint
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_official_layout_imports_to_identical_outputs(source_model):
    target = build_model(ModelConfig(size=64)).eval()
    target.load_state_dict(convert_official_state_dict(_reference_layout(source_model), target), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source_model(x)[0], target(x)[0])


def test_unknown_keys_are_refused_with_their_names(source_model):
    sd = _reference_layout(source_model)
    sd["some_other_net.layer.weight"] = torch.zeros(3)
    with pytest.raises(OfficialImportError, match="some_other_net.layer.weight"):
        convert_official_state_dict(sd, build_model(ModelConfig(size=64)))


def test_cli_imports_a_tch_file_without_unpickling(tmp_path, source_model):
    full = build_model(ModelConfig()).eval()
    path = tmp_path / "breakfast_box.tch"
    torch.save(_reference_layout(full), path)
    result = CliRunner().invoke(app, ["import-official", str(path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "slsg calibrate" in result.output and "--steps 0" not in result.output  # never retrain over it


def test_cli_refuses_a_foreign_checkpoint_without_traceback(tmp_path):
    path = tmp_path / "other.tch"
    torch.save({"backbone.weight": torch.zeros(4)}, path)
    result = CliRunner().invoke(app, ["import-official", str(path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "did not match" in result.output and "Traceback" not in result.output
