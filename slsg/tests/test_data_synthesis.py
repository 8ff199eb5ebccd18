"""Anomaly synthesis: every anomaly changes pixels inside its mask and none outside, each augmenter and source
step changes its input, seeded determinism across workers, blending rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from slsg.data.augment import TEXTURE_AUGMENTERS, augment_texture, color_jitter, copy_bands_outward, grid_shuffle
from slsg.data.perlin import perlin_mask, perlin_noise
from slsg.data.presets import PRESETS, Preset, SourceChoice, preset_for
from slsg.data.synthesis import MIN_CHANGED, _jitter_self, blend, draw_beta, self_source, synthesize
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


def textured_images(n: int, size: int) -> list[np.ndarray]:
    """Like `scene_images`, but no two pixels are alike by design: a flip, a shuffle or another image always differs."""
    rng = np.random.default_rng(8)
    out = []
    for im in scene_images(n, size):
        out.append(np.clip(im.astype(int) + rng.integers(-8, 9, im.shape), 0, 255).astype(np.uint8))
    return out


def changed_inside(good: np.ndarray, aug: np.ndarray, mask: np.ndarray) -> float:
    return float((aug != good).any(axis=-1)[mask].mean())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_anomaly_changes_pixels_inside_its_mask_and_none_outside(name):
    ds = SynthesisDataset(scene_images(8, 64), name, 64, seed=3)
    for k in range(200):
        good, aug, mask = ds.draw(k)
        assert mask.any(), f"{name} draw {k} has an empty mask"
        assert aug.shape == good.shape == (64, 64, 3) and aug.dtype == np.uint8
        assert np.array_equal(aug[~mask], good[~mask]), f"{name} draw {k} changed pixels outside its mask"
        assert changed_inside(good, aug, mask) >= MIN_CHANGED, f"{name} draw {k} left its mask unchanged"
    good, aug, mask = (t.numpy() for t in ds[0])  # the tensors the trainer gets say the same
    m = mask[0].astype(bool)
    assert np.array_equal(aug[~m], good[~m]) and changed_inside(good, aug, m) >= MIN_CHANGED


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_anomalies_are_rarely_drawn_again_when_content_differs(name):
    """On images where every flip, shuffle and texture differs, the first draw should change its mask: a source
    step or augmenter that returned its input unchanged would make many draws be drawn again."""
    images = [color_jitter(im, np.random.default_rng(0)) for im in textured_images(8, 64)]
    rng = np.random.default_rng(5)
    draws = [synthesize(images[k % 8], PRESETS[name], rng, images[:k % 8] + images[k % 8 + 1:], TextureSource(64)).draws
             for k in range(150)]
    assert np.mean(np.array(draws) > 1) <= 0.05, draws


def test_an_anomaly_that_cannot_change_its_mask_is_drawn_again_then_labelled_by_what_changed():
    flat = np.full((64, 64, 3), 90, np.uint8)  # every self source of a flat image is the image itself
    only_self = Preset("flat", r_max=0.35, choices=(SourceChoice(1.0, (("vflip",),)),))
    with pytest.raises(RuntimeError, match="unchanged"):
        synthesize(flat, only_self, np.random.default_rng(0), [], TextureSource(64))
    half = flat.copy()
    half[:, :32] = 30  # a horizontal flip changes every pixel; a vertical one none
    out = synthesize(half, Preset("half", r_max=0.35, choices=(SourceChoice(1.0, (("vflip",),)),
                                                                SourceChoice(1.0, (("hflip",),)))),
                     np.random.default_rng(1), [], TextureSource(64))
    assert changed_inside(half, out.image, out.mask) >= MIN_CHANGED


def _single(*steps, jitter: str = "none") -> Preset:
    return Preset("one", jitter=jitter, choices=(SourceChoice(1.0, tuple(steps)),))


def _cells(img: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    return [img[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols]
            for r in range(rows) for c in range(cols)]


@pytest.mark.parametrize("seed", range(6))
def test_each_self_source_step_does_what_it_names_and_changes_the_image(seed):
    image = textured_images(1, 64)[0]
    other = textured_images(2, 64)[1]
    turned = image[::-1, ::-1]  # self_source first turns the image by 180° half of the time

    def run(*steps) -> np.ndarray:
        out = self_source(image, [other], _single(*steps), np.random.default_rng(seed))
        assert out.shape == image.shape and not np.array_equal(out, image), steps
        return out

    assert any(np.array_equal(run(("vflip",)), t[::-1]) for t in (image, turned))
    assert any(np.array_equal(run(("hflip",)), t[:, ::-1]) for t in (image, turned))
    assert np.array_equal(run(("other",)), other)
    assert any(np.array_equal(run(("bands",)), copy_bands_outward(t)) for t in (image, turned))
    shuffled = run(("shuffle", 4, 4))
    source = next(t for t in (image, turned) if sorted(c.tobytes() for c in _cells(t, 4, 4))
                  == sorted(c.tobytes() for c in _cells(shuffled, 4, 4)))
    assert not np.array_equal(shuffled, source)


def test_copy_bands_outward_duplicates_the_middle_bands():
    image = textured_images(1, 64)[0]
    out = copy_bands_outward(image)
    assert np.array_equal(out[:16], image[16:32]) and np.array_equal(out[48:], image[32:48])
    assert np.array_equal(out[16:48], image[16:48]) and not np.array_equal(out, image)


def test_self_jitter_changes_colours_for_the_categories_that_use_it():
    image = textured_images(1, 64)[0]
    rng = np.random.default_rng(0)
    assert np.array_equal(_jitter_self(image, "none", rng), image)
    assert all(not np.array_equal(_jitter_self(image, "screw_bag", rng), image) for _ in range(10))
    changed = [not np.array_equal(_jitter_self(image, "pushpins", rng), image) for _ in range(40)]
    assert 0.5 <= np.mean(changed) <= 0.95  # jittered 70 % of the time (+ the 20 % blur)


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


@pytest.mark.parametrize(("rows", "cols"), [(4, 4), (3, 3), (3, 5), (2, 4), (1, 4)])
def test_grid_shuffle_moves_cells_and_keeps_each_cell_whole(rows, cols):
    im = textured_images(1, 64)[0]
    even = 64 % rows == 0 and 64 % cols == 0
    for seed in range(5):
        out = grid_shuffle(im, rows, cols, np.random.default_rng(seed))
        assert sorted(out.ravel().tolist()) == sorted(im.ravel().tolist())
        assert not np.array_equal(out, im), f"{rows}×{cols} seed {seed}: the shuffle left the image as it was"
        if even:  # every output cell is one input cell, and most cells moved
            before, after = _cells(im, rows, cols), _cells(out, rows, cols)
            assert sorted(c.tobytes() for c in after) == sorted(c.tobytes() for c in before)
            moved = sum(not np.array_equal(a, b) for a, b in zip(after, before))
            assert moved >= (rows * cols) // 2, f"only {moved} of {rows * cols} cells moved"


@pytest.mark.parametrize("op", TEXTURE_AUGMENTERS, ids=lambda op: op.__name__)
def test_each_texture_augmenter_changes_its_input(op):
    """Each DRAEM augmenter keeps shape and dtype and changes the texture (solarize fires half of the time,
    posterize keeps every bit one time in eight)."""
    changed = 0
    for seed in range(20):
        tex = TextureSource(64).draw(np.random.default_rng(seed))
        out = op(tex, np.random.default_rng(100 + seed))
        assert out.shape == tex.shape and out.dtype == np.uint8, op.__name__
        changed += not np.array_equal(out, tex)
    assert changed >= 6, f"{op.__name__} changed the texture in only {changed} of 20 draws"


def test_augment_texture_applies_three_distinct_changing_augmenters():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        tex = np.clip(textured_images(1, 64)[0].astype(int) + 40, 0, 255).astype(np.uint8)
        assert not np.array_equal(augment_texture(tex, rng), tex)


def test_texture_folder_is_used(tmp_path):
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


def test_color_jitter_changes_colours_but_stays_near_for_small_amounts():
    rng = np.random.default_rng(0)
    im = np.full((32, 32, 3), (60, 120, 180), np.uint8)
    outs = [color_jitter(im, rng, brightness=0.1, saturation=0.1) for _ in range(10)]
    assert all(np.abs(out.astype(int) - im).max() <= 25 for out in outs)
    assert sum(not np.array_equal(out, im) for out in outs) >= 8
    assert np.array_equal(color_jitter(im, rng), im)  # nothing asked, nothing changed


def test_unknown_category_gets_generic_preset_and_synthesize_rejects_odd_sizes():
    assert preset_for("bottle").name == "generic"
    with pytest.raises(ValueError, match="multiple of 32"):
        synthesize(np.zeros((40, 40, 3), np.uint8), PRESETS["generic"], np.random.default_rng(0), [],
                   TextureSource(40))
