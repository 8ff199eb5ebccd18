"""Anomaly synthesis: non-empty masks for every preset, seeded determinism across workers, blending rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from slsg.data.augment import TEXTURE_AUGMENTERS, color_jitter, grid_shuffle
from slsg.data.perlin import perlin_mask, perlin_noise
from slsg.data.presets import PRESETS, preset_for
from slsg.data.synthesis import blend, draw_beta, synthesize
from slsg.data.textures import TextureSource
from slsg.data.training_set import StepSampler, SynthesisDataset


def scene_images(n: int, size: int) -> list[np.ndarray]:
    """Bright objects on a dark ground, so every foreground rule (pushpins, splicing, juice) can fire."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        im = np.full((size, size, 3), 20, np.uint8)
        for _ in range(6):
            y, x = rng.integers(0, size - size // 4, 2)
            im[y:y + size // 5, x:x + size // 5] = rng.integers(60, 255, 3)
        out.append(im)
    return out


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_200_samples_per_preset_all_have_non_empty_masks(name):
    ds = SynthesisDataset(scene_images(8, 64), name, 64, seed=3)
    for k in range(200):
        good, aug, mask = ds.draw(k)
        assert mask.any(), f"{name} draw {k} has an empty mask"
        assert aug.shape == good.shape == (64, 64, 3) and aug.dtype == np.uint8
        assert np.array_equal(aug[~mask], good[~mask])


def test_masks_non_empty_at_256_for_loco_presets():
    images = scene_images(4, 256)
    for name in ("pushpins", "juice_bottle", "splicing_connectors"):
        ds = SynthesisDataset(images, name, 256, seed=1)
        assert all(ds.draw(k)[2].sum() >= PRESETS[name].min_area_256 for k in range(12))


def _batches(ds, workers: int) -> list[tuple[torch.Tensor, ...]]:
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers)
    return list(loader)


def test_same_seed_gives_identical_samples_with_0_and_2_workers():
    ds = SynthesisDataset(scene_images(6, 64), "generic", 64, seed=11)
    ds.set_epoch(2)
    a, b = _batches(ds, 0), _batches(ds, 2)
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)
    good, aug, mask = a[0]
    assert good.dtype == torch.uint8 and good.shape == (4, 64, 64, 3)
    assert mask.dtype == torch.float32 and mask.shape == (4, 1, 64, 64)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_epochs_and_seeds_give_different_samples_deterministically():
    ds = SynthesisDataset(scene_images(4, 64), "generic", 64, seed=5)
    first = ds[0][2]
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0][2])
    ds.set_epoch(0)
    assert torch.equal(first, ds[0][2])
    other = SynthesisDataset(scene_images(4, 64), "generic", 64, seed=6)
    assert not torch.equal(first, other[0][2])


def test_step_sampler_visits_every_image_once_per_pass():
    ds = SynthesisDataset(scene_images(5, 64), "generic", 64, seed=0)
    it = iter(StepSampler(start=10))
    ks = [next(it) for _ in range(5)]
    assert ks == [10, 11, 12, 13, 14]
    assert sorted(ds.image_index(k) for k in ks) == [0, 1, 2, 3, 4]


def test_size_must_be_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        SynthesisDataset(scene_images(1, 64), "generic", 48)


def test_perlin_mask_and_noise_properties():
    rng = np.random.default_rng(0)
    n = perlin_noise((64, 64), (4, 8), rng)
    assert n.shape == (64, 64) and -1.5 < n.min() < 0 < n.max() < 1.5
    with pytest.raises(ValueError, match="divisible"):
        perlin_noise((64, 64), (3, 3), rng)
    m = perlin_mask(64, 3, 0.5, rng)
    assert m.dtype == bool and m.shape == (64, 64)


def test_grid_shuffle_permutes_cells_and_keeps_pixels():
    rng = np.random.default_rng(0)
    im = np.arange(64 * 64 * 3, dtype=np.int64).reshape(64, 64, 3).astype(np.uint8)
    out = grid_shuffle(im, 3, 5, rng)
    assert sorted(out.ravel().tolist()) == sorted(im.ravel().tolist())


def test_texture_augmenters_keep_shape_and_dtype():
    rng = np.random.default_rng(1)
    tex = TextureSource(64).draw(rng)
    for op in TEXTURE_AUGMENTERS:
        out = op(tex, rng)
        assert out.shape == tex.shape and out.dtype == np.uint8, op.__name__


def test_texture_folder_is_used(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "t.png"), np.full((50, 70, 3), 123, np.uint8))
    src = TextureSource(64, tmp_path)
    assert len(src.files) == 1 and src._read(np.random.default_rng(0))[0, 0, 0] == 123
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextureSource(64, tmp_path / "nope")


def test_breakfast_box_beta_bug_is_faithful_by_default_and_can_be_fixed():
    rng = np.random.default_rng(0)
    p = PRESETS["breakfast_box"]
    faithful = [draw_beta(p, True, rng) for _ in range(300)]
    fixed = [draw_beta(p, True, rng, fix_bugs=True) for _ in range(300)]
    assert max(faithful) > 0.4 and max(fixed) <= 0.25
    assert all(draw_beta(PRESETS["juice_bottle"], s, rng) == 0.0 for s in (True, False))


def test_blend_is_exact_outside_mask_and_mixes_inside():
    image = np.full((32, 32, 3), 100, np.uint8)
    source = np.full((32, 32, 3), 200, np.uint8)
    m = np.zeros((32, 32), bool)
    m[:8] = True
    out = blend(image, source, m, 0.25)
    assert (out[~m] == 100).all() and (out[m] == 175).all()


def test_color_jitter_stays_near_for_small_amounts():
    rng = np.random.default_rng(0)
    im = np.full((32, 32, 3), (60, 120, 180), np.uint8)
    out = color_jitter(im, rng, brightness=0.1, saturation=0.1)
    assert np.abs(out.astype(int) - im).max() <= 25


def test_unknown_category_gets_generic_preset_and_synthesize_rejects_odd_sizes():
    assert preset_for("bottle").name == "generic"
    with pytest.raises(ValueError, match="multiple of 32"):
        synthesize(np.zeros((40, 40, 3), np.uint8), PRESETS["generic"], np.random.default_rng(0), [],
                   TextureSource(40))
