"""The network is the reference's, layer for layer, at any multiple-of-32 size, on both backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slsg.model import ModelConfig, build_model
from slsg.model.graph import knn_neighbours, max_relative, relative_position
from slsg.model.macs import count_macs, count_params


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
@pytest.mark.parametrize("size", [256, 320])
def test_forward_gives_two_class_logits_at_input_size(backbone, size):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, size=size)).eval()
    with torch.no_grad():
        logits, aux = model(torch.randn(1, 3, size, size))
    assert logits.shape == aux.shape == (1, 2, size, size)
    assert torch.isfinite(logits).all()


def test_faithful_resnet18_matches_reference_size_and_cost():
    model = build_model(ModelConfig()).eval()
    total, trainable = count_params(model)
    assert total == pytest.approx(21.1e6, rel=0.01)
    assert trainable == pytest.approx(9.4e6, rel=0.02)
    macs = count_macs(model, torch.zeros(1, 3, 256, 256))
    assert macs["total"] == pytest.approx(23.1e9, rel=0.05)
    assert macs["decoder"] > macs["encoder"] > macs["graph layer"]


def test_relative_position_matches_reference_values():
    r = relative_position(512, 16, 16).numpy()
    assert r[0, 0] == pytest.approx(-1.0, abs=1e-6)
    assert r[0, 1] == pytest.approx(-0.986, abs=1e-3)  # 4-neighbour
    assert r[0, 16 + 1] == pytest.approx(-0.972, abs=1e-3)  # diagonal
    assert r[0, 255] == pytest.approx(-0.641, abs=1e-3)  # far corner
    assert r.min() == pytest.approx(-1.0, abs=1e-6) and r.max() == pytest.approx(-0.641, abs=2e-3)


def _slow_neighbours(q: np.ndarray, rel: np.ndarray, candidates: int, dilation: int) -> list[list[int]]:
    """Node by node: cosine + relative position, sort descending, keep every `dilation`-th of the top ones."""
    out = []
    for i in range(q.shape[1]):
        scores = []
        for j in range(q.shape[1]):
            a, b = q[:, i], q[:, j]
            cos = float(a @ b / (max(np.linalg.norm(a), 1e-12) * max(np.linalg.norm(b), 1e-12)))
            scores.append((cos + rel[i, j], j))
        ranked = [j for _, j in sorted(scores, key=lambda t: (-t[0], t[1]))]
        out.append(ranked[:candidates][::dilation])
    return out


def test_graph_picks_the_same_neighbours_as_a_slow_loop():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 16, 64, generator=g, dtype=torch.float64)
    rel = relative_position(32, 8, 8).double()
    idx = knn_neighbours(q, rel, 27, 3)[0].tolist()
    assert idx == _slow_neighbours(q[0].numpy(), rel.numpy(), 27, 3)
    assert len(idx[0]) == 9


def test_max_relative_is_max_of_neighbour_differences():
    h = torch.arange(12, dtype=torch.float32).reshape(1, 2, 6) ** 2
    idx = torch.tensor([[[1, 2], [0, 0], [5, 4], [3, 3], [0, 1], [2, 2]]])
    out = max_relative(h, idx)
    for i in range(6):
        expect = torch.stack([h[0, :, n] - h[0, :, i] for n in idx[0, i]]).amax(0)
        assert torch.equal(out[0, :, i], expect)


def test_encoder_is_frozen_and_its_batchnorm_follows_the_flag():
    faithful = build_model(ModelConfig(size=64)).train()
    assert not any(p.requires_grad for p in faithful.encoder.parameters())
    assert faithful.encoder.bn1.training  # reference: BN adapts in train mode
    frozen = build_model(ModelConfig(size=64, encoder_bn="eval")).train()
    assert not frozen.encoder.bn1.training


def test_reference_flags_change_the_network():
    base = build_model(ModelConfig(size=64))
    alt = build_model(ModelConfig(size=64, value_conv_reference=False, relpos_reference_sign=False))
    assert base.graph.value.kernel_size == (3, 3) and alt.graph.value.kernel_size == (1, 1)
    assert torch.allclose(base.graph.relative_pos, -alt.graph.relative_pos)


def test_wrong_inputs_are_refused_with_a_clear_message():
    model = build_model(ModelConfig(size=64)).eval()
    with pytest.raises(ValueError, match="N×3×H×W"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="built for 64×64"):
        model(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match="multiple of 32"):
        ModelConfig(size=100)
    with pytest.raises(ValueError, match="unknown backbone"):
        ModelConfig(backbone="vgg")


def test_config_round_trips_through_json():
    cfg = ModelConfig(backbone="efficientnet_lite0", size=288, decoder_widths=(64, 32, 16))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_fused_graph_kernel_gives_the_reference_output_on_cpu():
    torch.manual_seed(5)
    ref = build_model(ModelConfig(backbone="efficientnet_lite0", size=64)).eval()
    fused = build_model(ModelConfig(backbone="efficientnet_lite0", size=64, graph_kernel="fused")).eval()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x)[0], ref(x)[0], rtol=1e-5, atol=1e-5)
