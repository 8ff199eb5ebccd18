"""Metric values against hand computations, sklearn and a brute-force sweep over every threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from slsg.metrics import (
    Defect,
    DefectConfigError,
    PixelImage,
    au_spro,
    auroc,
    defects_from_channels,
    defects_from_mask,
    evaluate_pixels,
    image_aurocs,
    pixel_auroc,
    saturation_area,
)


def brute_force_au_spro(maps, defects, limit):
    """Every distinct float32 threshold, score ≥ t is positive; trapezoid with interpolation at the limit."""
    neg, per_defect = [], []
    for m, ds in zip(maps, defects):
        union = np.zeros(m.shape, bool)
        for d in ds:
            union |= d.mask
            per_defect.append((m[d.mask].astype(np.float32), d.saturation))
        neg.append(m[~union].astype(np.float32))
    neg = np.concatenate(neg)
    fpr, spro = [0.0], [0.0]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]).astype(np.float32))[::-1]:
        fpr.append(np.count_nonzero(neg >= t) / neg.size)
        spro.append(np.mean([min(np.count_nonzero(v >= t) / s, 1.0) for v, s in per_defect]))
    area = 0.0
    for i in range(1, len(fpr)):
        f0, f1, s0, s1 = fpr[i - 1], fpr[i], spro[i - 1], spro[i]
        if f1 <= limit:
            area += 0.5 * (f1 - f0) * (s0 + s1)
        else:
            if f0 < limit:
                s_lim = s0 + (s1 - s0) * (limit - f0) / (f1 - f0)
                area += 0.5 * (limit - f0) * (s0 + s_lim)
            break
    return area / limit


def test_auroc_with_ties_matches_hand_count():
    # pairs (pos, neg): 0.4>0.1, 0.4=0.4 (½), 0.8>0.1, 0.8>0.4 → 3.5 / 4
    assert auroc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == pytest.approx(0.875)


def test_auroc_equals_sklearn_on_random_tied_data():
    rng = np.random.default_rng(3)
    for _ in range(5):
        s = np.round(rng.random(300), 1)
        y = rng.random(300) < 0.3
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_of_a_single_class_is_undefined_and_nan_scores_are_refused():
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, np.nan], [0, 1])


def test_image_aurocs_split_logical_structural_overall_and_per_defect():
    scores = [0.1, 0.2, 0.9, 0.5, 0.6, 0.9, 1.0]
    kinds = ["good"] * 3 + ["logical"] * 2 + ["structural"] * 2
    labels = ["good"] * 3 + ["logical_anomalies"] * 2 + ["structural_anomalies"] * 2
    r = image_aurocs(scores, kinds, labels)
    assert r.logical == pytest.approx(4 / 6)
    assert r.structural == pytest.approx(5.5 / 6)  # 0.9 ties one good 0.9
    assert r.overall == pytest.approx(9.5 / 12)
    assert r.mean_ls == pytest.approx(0.5 * (4 / 6 + 5.5 / 6))
    assert r.per_defect == {"logical_anomalies": r.logical, "structural_anomalies": r.structural}


def test_saturation_area_absolute_and_relative():
    assert saturation_area(100, {"saturation_threshold": 50, "relative_saturation": False}) == 50
    assert saturation_area(30, {"saturation_threshold": 50, "relative_saturation": False}) == 30
    assert saturation_area(101, {"saturation_threshold": 0.5, "relative_saturation": True}) == 50  # floor
    assert saturation_area(1, {"saturation_threshold": 0.5, "relative_saturation": True}) == 1  # at least 1


def _one_row(values, defect_cols, saturation):
    m = np.asarray([values], np.float32)
    mask = np.zeros(m.shape, bool)
    mask[0, defect_cols] = True
    return m, [Defect(mask, saturation)]


def test_au_spro_hand_computed_with_interpolation_at_the_limit():
    # defect pixels 0.8, 0.5 (saturation 2 = area); free pixels 0.9, 0.5, 0.5, 0.5
    # curve: (0,0) → (0.25,0) → (0.25,0.5) → (1,1)
    m, ds = _one_row([0.8, 0.5, 0.9, 0.5, 0.5, 0.5], [0, 1], 2.0)
    got = au_spro([m], [ds], limits=(0.05, 0.3, 1.0))
    s_at_03 = 0.5 + 0.5 * 0.05 / 0.75
    assert got[0.05] == pytest.approx(0.0)
    assert got[0.3] == pytest.approx(0.05 * (0.5 + s_at_03) / 2 / 0.3)
    assert got[1.0] == pytest.approx(0.75 * 0.75)


def test_saturation_lifts_spro_to_one_once_enough_pixels_are_found():
    # saturation 1: the 0.8 pixel alone saturates → (0.25, 0) → (0.25, 1) → (1, 1)
    m, ds = _one_row([0.8, 0.5, 0.9, 0.5, 0.5, 0.5], [0, 1], 1.0)
    assert au_spro([m], [ds], limits=(1.0,))[1.0] == pytest.approx(0.75)
    cfg = [{"pixel_value": 7, "saturation_threshold": 0.5, "relative_saturation": True}]
    mask = np.zeros(m.shape, np.uint8)
    mask[0, :2] = 7
    relative = defects_from_channels([(mask, 7)], cfg)
    assert relative[0].saturation == 1.0
    assert au_spro([m], [relative], limits=(1.0,))[1.0] == pytest.approx(0.75)


def test_perfect_map_scores_one_and_random_map_scores_chance():
    rng = np.random.default_rng(0)
    masks = [np.zeros((40, 40), bool) for _ in range(4)]
    masks[1][5:15, 5:20] = True
    masks[3][20:35, 10:14] = True
    masks[3][2:4, 30:38] = True
    perfect = [mk.astype(np.float32) * 0.5 + 0.25 for mk in masks]
    assert pixel_auroc(perfect, masks) == 1.0
    assert au_spro(perfect, masks) == {0.05: pytest.approx(1.0), 0.3: pytest.approx(1.0)}
    noise = [rng.random((40, 40)).astype(np.float32) for _ in masks]
    assert pixel_auroc(noise, masks) == pytest.approx(0.5, abs=0.05)
    assert au_spro(noise, masks, limits=(0.3,))[0.3] == pytest.approx(0.15, abs=0.04)  # sPRO ≈ FPR


def test_pixel_auroc_equals_sklearn():
    rng = np.random.default_rng(5)
    maps = [np.round(rng.random((30, 20)), 3).astype(np.float32) for _ in range(3)]
    masks = [rng.random((30, 20)) < 0.15 for _ in range(3)]
    flat_y = np.concatenate([m.ravel() for m in masks])
    flat_s = np.concatenate([m.ravel() for m in maps])
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(flat_y, flat_s), abs=1e-12)


def _random_case(seed):
    rng = np.random.default_rng(seed)
    maps, defects = [], []
    for i in range(5):
        m = np.round(rng.random((24, 32)), 2).astype(np.float32)
        ds = []
        if i >= 2:
            a = np.zeros(m.shape, bool)
            a[3:9, 4:12] = True
            b = np.zeros(m.shape, bool)
            b[6:20, 10:30] = True  # overlaps a: a pixel may belong to two defects
            m[a] = np.minimum(m[a] + 0.3, 1.0)
            ds = [Defect(a, 20.0), Defect(b, 17.5)]
        maps.append(m)
        defects.append(ds)
    return maps, defects


@pytest.mark.parametrize("limit", [0.01, 0.05, 0.3, 1.0])
def test_au_spro_equals_brute_force_sweep_over_every_threshold(limit):
    maps, defects = _random_case(1)
    got = au_spro(maps, defects, limits=(limit,), tolerance=0.0)[limit]
    assert got == pytest.approx(brute_force_au_spro(maps, defects, limit), abs=1e-12)


def test_reported_bound_covers_the_error_of_an_unrefined_curve():
    maps, defects = _random_case(2)
    maps = [m + np.float32(0.001) * np.arange(m.size, dtype=np.float32).reshape(m.shape) % 1 for m in maps]
    images = [PixelImage(m, d) for m, d in zip(maps, defects)]
    coarse = evaluate_pixels(lambda: images, limits=(0.05, 0.3), max_passes=1)["all"]
    for limit in (0.05, 0.3):
        exact = brute_force_au_spro(maps, defects, limit)
        assert abs(coarse.au_spro[limit] - exact) <= coarse.au_spro_bound[limit] + 1e-12
    assert coarse.au_spro_bound[0.05] > 0  # the test must exercise a non-trivial bound


def test_groups_pool_only_their_own_images():
    maps, defects = _random_case(4)
    groups = [("all", "logical", "structural"), ("all", "logical", "structural"), ("all", "logical"),
              ("all", "structural"), ("all", "structural")]
    images = [PixelImage(m, d, g) for m, d, g in zip(maps, defects, groups)]
    result = evaluate_pixels(lambda: images, limits=(0.3,), tolerance=0.0)
    keep = [0, 1, 3, 4]
    expected = brute_force_au_spro([maps[i] for i in keep], [defects[i] for i in keep], 0.3)
    assert result["structural"].au_spro[0.3] == pytest.approx(expected, abs=1e-12)
    assert result["structural"].n_defects == 4
    assert result["logical"].n_images == 3


def test_connected_components_become_defects_saturating_at_their_area():
    mask = np.zeros((10, 10), np.uint8)
    mask[1:3, 1:3] = 255
    mask[6:9, 5:9] = 255
    mask[3, 3] = 255  # touches the first blob diagonally: 8-connected
    ds = defects_from_mask(mask)
    assert sorted(d.area for d in ds) == [5, 12]
    assert all(d.saturation == d.area for d in ds)


def test_unknown_pixel_value_is_a_clear_error():
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 1] = 9
    cfg = [{"pixel_value": 255, "saturation_threshold": 10, "relative_saturation": False}]
    with pytest.raises(DefectConfigError, match="pixel value 9.*known: 255"):
        defects_from_channels([(mask, 9)], cfg, where="x/000.png")


def test_map_and_mask_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        pixel_auroc([np.zeros((4, 4), np.float32)], [np.ones((8, 8), bool)])
