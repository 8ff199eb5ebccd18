"""The authors' `.tch` layout imports onto our network tensor by tensor.

The reference's key list below is written out by hand from its module definitions (reference §1.1–§1.8 and the
`ProjectionNet`, `Decoder`, `SpatialAttention`, `Grapher` definitions it describes), in the order a PyTorch
state dict of `ProjectionNet` holds them: modules in registration order (encoder, decoder, aux0, aux0_out, LKA64,
LKA128, LKA256, GCN3), a module's own parameters before its children's. Nothing here is derived from our own
state dict, so a mapping that relied on a coincidence of order or shape fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slsg.cli import app
from slsg.model import ModelConfig, build_model
from slsg.model.official import OfficialImportError, convert_official_state_dict

Shape = tuple[int, ...]


def _conv(name: str, cout: int, cin: int, k: int, bias: bool = True) -> list[tuple[str, Shape]]:
    return [(f"{name}.weight", (cout, cin, k, k))] + ([(f"{name}.bias", (cout,))] if bias else [])


def _bn(name: str, c: int) -> list[tuple[str, Shape]]:
    return [(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)),
            (f"{name}.running_var", (c,)), (f"{name}.num_batches_tracked", ())]


def _resnet18(p: str) -> list[tuple[str, Shape]]:
    """torchvision's resnet18: conv1, bn1, layer1..4 of two BasicBlocks (conv1 bn1 conv2 bn2 [downsample]), fc."""
    keys = _conv(f"{p}.conv1", 64, 3, 7, bias=False) + _bn(f"{p}.bn1", 64)
    cin = 64
    for layer, c in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            b = f"{p}.layer{layer}.{block}"
            keys += _conv(f"{b}.conv1", c, cin if block == 0 else c, 3, bias=False) + _bn(f"{b}.bn1", c)
            keys += _conv(f"{b}.conv2", c, c, 3, bias=False) + _bn(f"{b}.bn2", c)
            if block == 0 and layer > 1:
                keys += _conv(f"{b}.downsample.0", c, cin, 1, bias=False) + _bn(f"{b}.downsample.1", c)
        cin = c
    return keys + [(f"{p}.fc.weight", (1000, 512)), (f"{p}.fc.bias", (1000,))]


def _decoder(d: str) -> list[tuple[str, Shape]]:
    """Decoder: up = (Upsample, conv, BN, ReLU) except up4 (conv, BN, ReLU); db = (conv, BN, ReLU) ×2, db4 ×1;
    res_bn_relu = (BN(24), ReLU), unused; final_out_seg = (Upsample, conv, BN, ReLU, conv, BN, ReLU, conv)."""
    return (_conv(f"{d}.up1.1", 256, 512, 3) + _bn(f"{d}.up1.2", 256)
            + _conv(f"{d}.db1.0", 256, 512, 3) + _bn(f"{d}.db1.1", 256)
            + _conv(f"{d}.db1.3", 256, 256, 3) + _bn(f"{d}.db1.4", 256)
            + _conv(f"{d}.up2.1", 128, 256, 3) + _bn(f"{d}.up2.2", 128)
            + _conv(f"{d}.db2.0", 128, 128 + 128 + 32, 3) + _bn(f"{d}.db2.1", 128)
            + _conv(f"{d}.db2.3", 128, 128, 3) + _bn(f"{d}.db2.4", 128)
            + _conv(f"{d}.up3.1", 64, 128, 3) + _bn(f"{d}.up3.2", 64)
            + _conv(f"{d}.db3.0", 64, 64 + 64 + 32, 3) + _bn(f"{d}.db3.1", 64)
            + _conv(f"{d}.db3.3", 64, 64, 3) + _bn(f"{d}.db3.4", 64)
            + _conv(f"{d}.up4.0", 32, 64, 3) + _bn(f"{d}.up4.1", 32)
            + _conv(f"{d}.db4.0", 64, 32 + 64, 3) + _bn(f"{d}.db4.1", 64)
            + _bn(f"{d}.res_bn_relu.0", 24)
            + _conv(f"{d}.final_out_seg.1", 32, 64, 3) + _bn(f"{d}.final_out_seg.2", 32)
            + _conv(f"{d}.final_out_seg.4", 16, 32, 3) + _bn(f"{d}.final_out_seg.5", 16)
            + _conv(f"{d}.final_out_seg.7", 2, 16, 3))


def _lka(name: str, dim: int) -> list[tuple[str, Shape]]:
    """SpatialAttention: p1 (built, never used), AT = (dw conv0, dw conv_spatial, conv1), p2."""
    return (_conv(f"{name}.p1", dim, dim, 1) + _conv(f"{name}.AT.conv0", dim, 1, 3)
            + _conv(f"{name}.AT.conv_spatial", dim, 1, 3) + _conv(f"{name}.AT.conv1", dim, dim, 1)
            + _conv(f"{name}.p2", dim, dim, 1))


def _grapher(g: str, nodes: int) -> list[tuple[str, Shape]]:
    """Grapher(512): its own frozen relative_pos parameter first, then fc1, graph_conv (gconv = MRConv2d: nn =
    BasicConv(1024→1024, groups 4) + BN + GELU, f_value 3×3, W 1×1; dilated_knn_graph: f_key and f_query, the
    same module registered twice), fc2."""
    kg = f"{g}.graph_conv.dilated_knn_graph"
    return ([(f"{g}.relative_pos", (1, nodes, nodes))]
            + _conv(f"{g}.fc1.0", 512, 512, 1) + _bn(f"{g}.fc1.1", 512)
            + _conv(f"{g}.graph_conv.gconv.nn.0", 1024, 1024 // 4, 1) + _bn(f"{g}.graph_conv.gconv.nn.1", 1024)
            + _conv(f"{g}.graph_conv.gconv.f_value", 512, 512, 3) + _conv(f"{g}.graph_conv.gconv.W", 512, 512, 1)
            + _conv(f"{kg}.f_key.0", 256, 512, 1) + _bn(f"{kg}.f_key.1", 256)
            + _conv(f"{kg}.f_query.0", 256, 512, 1) + _bn(f"{kg}.f_query.1", 256)
            + _conv(f"{g}.fc2.0", 512, 1024, 1) + _bn(f"{g}.fc2.1", 512))


def reference_keys(nodes: int = 256) -> list[tuple[str, Shape]]:
    """ProjectionNet's state dict, in order (nodes = 256 for the reference's 256×256 input)."""
    return (_resnet18("encoder_segment.resnet18") + _decoder("decoder_segment")
            + _conv("aux0.0", 256, 512, 3) + _bn("aux0.1", 256) + _conv("aux0.3", 32, 256, 3) + _bn("aux0.4", 32)
            + _conv("aux0_out.0", 32, 32, 3) + _bn("aux0_out.1", 32) + _conv("aux0_out.3", 2, 32, 3)
            + _lka("LKA64", 64) + _lka("LKA128", 128) + _lka("LKA256", 256) + _grapher("GCN3", nodes))


#: reference module → ours (module prefixes), what the import promises; the dead ones map to None
EXPECTED: list[tuple[str, str | None]] = [
    ("encoder_segment.resnet18.", "encoder."),
    ("LKA64.AT.", "skips.0."), ("LKA128.AT.", "skips.1."), ("LKA256.AT.", "skips.2."),
    ("LKA64.p2.", "skips.0.proj."), ("LKA128.p2.", "skips.1.proj."), ("LKA256.p2.", "skips.2.proj."),
    ("LKA64.p1.", None), ("LKA128.p1.", None), ("LKA256.p1.", None),
    ("GCN3.relative_pos", None),
    ("GCN3.fc1.", "graph.fc1."), ("GCN3.fc2.", "graph.fc2."),
    ("GCN3.graph_conv.gconv.nn.", "graph.fuse."), ("GCN3.graph_conv.gconv.f_value.", "graph.value."),
    ("GCN3.graph_conv.gconv.W.", "graph.out_proj."),
    ("GCN3.graph_conv.dilated_knn_graph.f_key.", "graph.qk."),
    ("GCN3.graph_conv.dilated_knn_graph.f_query.", None),
    ("aux0.0.", "aux.body.0.0."), ("aux0.1.", "aux.body.0.1."), ("aux0.3.", "aux.body.1.0."),
    ("aux0.4.", "aux.body.1.1."),
    ("aux0_out.0.", "aux.out.0.0."), ("aux0_out.1.", "aux.out.0.1."), ("aux0_out.3.", "aux.out.1."),
    ("decoder_segment.up1.1.", "decoder.up1.0."), ("decoder_segment.up1.2.", "decoder.up1.1."),
    ("decoder_segment.db1.0.", "decoder.db1.0.0."), ("decoder_segment.db1.1.", "decoder.db1.0.1."),
    ("decoder_segment.db1.3.", "decoder.db1.1.0."), ("decoder_segment.db1.4.", "decoder.db1.1.1."),
    ("decoder_segment.up2.1.", "decoder.up2.0."), ("decoder_segment.up2.2.", "decoder.up2.1."),
    ("decoder_segment.db2.0.", "decoder.db2.0.0."), ("decoder_segment.db2.1.", "decoder.db2.0.1."),
    ("decoder_segment.db2.3.", "decoder.db2.1.0."), ("decoder_segment.db2.4.", "decoder.db2.1.1."),
    ("decoder_segment.up3.1.", "decoder.up3.0."), ("decoder_segment.up3.2.", "decoder.up3.1."),
    ("decoder_segment.db3.0.", "decoder.db3.0.0."), ("decoder_segment.db3.1.", "decoder.db3.0.1."),
    ("decoder_segment.db3.3.", "decoder.db3.1.0."), ("decoder_segment.db3.4.", "decoder.db3.1.1."),
    ("decoder_segment.up4.0.", "decoder.up4.0."), ("decoder_segment.up4.1.", "decoder.up4.1."),
    ("decoder_segment.db4.0.", "decoder.db4.0."), ("decoder_segment.db4.1.", "decoder.db4.1."),
    ("decoder_segment.res_bn_relu.", None),
    ("decoder_segment.final_out_seg.1.", "decoder.final.0.0."),
    ("decoder_segment.final_out_seg.2.", "decoder.final.0.1."),
    ("decoder_segment.final_out_seg.4.", "decoder.final.1.0."),
    ("decoder_segment.final_out_seg.5.", "decoder.final.1.1."),
    ("decoder_segment.final_out_seg.7.", "decoder.final.2."),
]


def expected_name(key: str) -> str | None:
    for theirs, ours in EXPECTED:
        if key.startswith(theirs) or key == theirs:
            return None if ours is None else ours + key[len(theirs):]
    raise AssertionError(f"{key} is in the reference key list but not in EXPECTED")


def reference_relative_pos(grid: int, dim: int = 512) -> torch.Tensor:
    """R = −2·E·Eᵀ/dim of MAE's 2-D sin-cos embedding, written as what the dot product is: for nodes i, j at
    offsets (dx, dy), −(2/dim)·Σ_{f<dim/4} [cos(dx·ω_f) + cos(dy·ω_f)] with ω_f = 10000^(−f/(dim/4))."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    ys, xs = np.divmod(np.arange(grid * grid), grid)  # raster order
    dx, dy = xs[:, None] - xs[None, :], ys[:, None] - ys[None, :]
    r = -(2.0 / dim) * (np.cos(dx[..., None] * omega).sum(-1) + np.cos(dy[..., None] * omega).sum(-1))
    return torch.from_numpy(r).float().unsqueeze(0)


def official_file(model, seed: int = 0) -> dict[str, torch.Tensor]:
    """A `.tch` in the reference's keys and order: our model's weights where the import maps them, random for the
    dead ones (f_query a copy of f_key, as the shared module saves it), the reference's relative_pos."""
    gen = torch.Generator().manual_seed(seed)
    own = model.state_dict()
    grid = model.cfg.size // 16
    out: dict[str, torch.Tensor] = {}
    for key, shape in reference_keys(grid * grid):
        ours = expected_name(key)
        if key == "GCN3.relative_pos":
            out[key] = reference_relative_pos(grid)
        elif key.startswith("GCN3.graph_conv.dilated_knn_graph.f_query."):
            out[key] = out[key.replace("f_query", "f_key")].clone()
        elif ours is None:
            out[key] = torch.randn(shape, generator=gen) if shape else torch.tensor(0)
        else:
            assert tuple(own[ours].shape) == shape, (key, ours, tuple(own[ours].shape), shape)
            out[key] = own[ours].clone()
    return out


@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(3)
    model = build_model(ModelConfig(size=64)).eval()
    for m in model.modules():  # non-trivial BN statistics, as in a trained checkpoint
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_every_reference_tensor_lands_on_its_counterpart_whatever_the_key_order():
    model = build_model(ModelConfig())  # the released checkpoints: ResNet-18 at 256×256
    gen = torch.Generator().manual_seed(0)
    official = {k: torch.randn(s, generator=gen) if s else torch.tensor(7) for k, s in reference_keys()}
    official["GCN3.relative_pos"] = reference_relative_pos(16)
    for order in (list(official), list(reversed(official)), sorted(official)):
        converted = convert_official_state_dict({k: official[k] for k in order}, model)
        assert set(converted) == set(model.state_dict())
        for key in official:
            ours = expected_name(key)
            if ours is not None:
                assert converted[ours] is official[key], f"{key} did not land on {ours}"


def test_official_layout_imports_to_identical_outputs(source_model):
    target = build_model(ModelConfig(size=64)).eval()
    target.load_state_dict(convert_official_state_dict(official_file(source_model), target), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source_model(x)[0], target(x)[0])


def test_our_relative_position_term_is_the_references():
    ours = build_model(ModelConfig()).graph.relative_pos
    theirs = reference_relative_pos(16)[0]
    assert torch.allclose(ours, theirs, atol=1e-6)
    # the reference's own numbers (§1.3): diagonal −1, 4-neighbours −0.986, diagonal ones −0.972, far corner −0.641
    assert ours[0, 0].item() == pytest.approx(-1.0, abs=1e-6)
    assert ours[0, 1].item() == pytest.approx(-0.986, abs=5e-4)
    assert ours[0, 16].item() == pytest.approx(-0.986, abs=5e-4)
    assert ours[0, 17].item() == pytest.approx(-0.972, abs=5e-4)
    assert ours[0, 255].item() == pytest.approx(-0.641, abs=5e-4)


@pytest.mark.parametrize("damage", ["sign", "grid"])
def test_a_relative_position_term_unlike_ours_is_refused(source_model, damage):
    official = official_file(source_model)
    if damage == "sign":
        official["GCN3.relative_pos"] = -official["GCN3.relative_pos"]
    else:
        official["GCN3.relative_pos"] = reference_relative_pos(16)
    with pytest.raises(OfficialImportError, match="relative_pos"):
        convert_official_state_dict(official, build_model(ModelConfig(size=64)))


def test_unknown_keys_are_refused_with_their_names(source_model):
    sd = official_file(source_model)
    sd["some_other_net.layer.weight"] = torch.zeros(3)
    with pytest.raises(OfficialImportError, match="some_other_net.layer.weight"):
        convert_official_state_dict(sd, build_model(ModelConfig(size=64)))


def test_a_missing_reference_tensor_is_refused_with_ours_named(source_model):
    sd = official_file(source_model)
    del sd["decoder_segment.final_out_seg.7.bias"]
    with pytest.raises(OfficialImportError, match=r"decoder\.final\.2\.bias"):
        convert_official_state_dict(sd, build_model(ModelConfig(size=64)))


def test_cli_imports_a_tch_file_without_unpickling(tmp_path):
    full = build_model(ModelConfig()).eval()
    path = tmp_path / "breakfast_box.tch"
    torch.save(official_file(full), path)
    result = CliRunner().invoke(app, ["import-official", str(path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "slsg threshold" in result.output and "--steps 0" not in result.output  # never retrain over it


def test_cli_refuses_a_foreign_checkpoint_without_traceback(tmp_path):
    path = tmp_path / "other.tch"
    torch.save({"backbone.weight": torch.zeros(4)}, path)
    result = CliRunner().invoke(app, ["import-official", str(path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "did not match" in result.output and "Traceback" not in result.output
