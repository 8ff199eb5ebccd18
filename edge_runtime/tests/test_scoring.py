"""The one score, threshold and verdict rule that training, export and the runtime share."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.scoring import (
    TOP_K,
    Threshold,
    image_score,
    is_anomalous,
    threshold_from_good_scores,
    threshold_warning,
    transferred_threshold,
)


def test_score_is_the_mean_of_the_top_k_map_values():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 1, 32, 32)).astype(np.float32)
    expected = np.sort(maps.reshape(3, -1), axis=1)[:, -TOP_K:].mean(axis=1)
    np.testing.assert_allclose(image_score(maps), expected, rtol=1e-6)
    assert image_score(np.ones((4, 4), np.float32)).shape == (1,)  # fewer pixels than k: all of them


def test_threshold_is_read_from_the_good_scores_tail_and_steadier_than_their_quantile():
    rng = np.random.default_rng(0)
    population = rng.gamma(4.0, 0.1, 200_000)  # good scores: skewed, with an exponential tail
    truth = np.quantile(population, 0.99)
    fitted, plain = [], []
    for _ in range(300):  # 300 lines, each setting its threshold on 100 validation images
        draw = rng.choice(population, 100, replace=False)
        t = threshold_from_good_scores(draw, 0.01)
        assert t.method == "exponential tail" and t.n_good == 100
        fitted.append(np.mean(population > t.value))
        plain.append(np.mean(population > np.quantile(draw, 0.99)))
    assert abs(np.median(fitted) - 0.01) < 0.004  # the rate asked, on good parts never seen
    assert np.std(fitted) < 0.7 * np.std(plain)  # and far less at the mercy of which images were drawn
    assert np.mean(np.abs(np.array(fitted) - 0.01) < 0.01) > 0.8
    few = threshold_from_good_scores(np.arange(1, 21, dtype=np.float64), 0.05)  # a tail of 4: the plain quantile
    assert few.method == "quantile" and few.value == pytest.approx(np.quantile(np.arange(1, 21), 0.95))
    assert few.quantiles["1"] == 20.0 and truth > 0
    t = threshold_from_good_scores(rng.gamma(4.0, 0.1, 100), 0.01)
    assert Threshold.from_dict(t.to_dict()) == t


def test_a_transferred_threshold_follows_a_models_shift_and_stretch_and_keeps_the_references_tail():
    rng = np.random.default_rng(0)
    reference = rng.normal(1.0, 0.2, 30)
    base = threshold_from_good_scores(rng.normal(1.0, 0.2, 400), 0.01)  # set on many more images than 30
    same, how = transferred_threshold(base, reference, reference)
    assert same.value == pytest.approx(base.value) and how["slope"] == pytest.approx(1.0)
    stretched, how = transferred_threshold(base, reference, 2.0 * reference + 0.5)  # e.g. INT8's scores
    assert stretched.value == pytest.approx(2.0 * base.value + 0.5)
    assert how["method"] == "transferred" and how["r"] == pytest.approx(1.0)
    assert stretched.quantiles["1"] == pytest.approx(2.0 * reference.max() + 0.5)  # its own good scores
    assert stretched.n_good == base.n_good and stretched.false_reject_rate == 0.01
    few, how = transferred_threshold(base, reference[:2], reference[:2] + 1.0)  # no line through 2 points
    assert how["method"] == "own quantile" and few.value == pytest.approx(np.quantile(reference[:2] + 1.0, 0.99))
    with pytest.raises(ValueError, match="same images"):
        transferred_threshold(base, reference, reference[:5])


def test_a_noisier_models_transferred_threshold_stays_in_the_tail():
    """INT8 scores that follow FP32's only loosely (r ≈ 0.6) but have the same spread: the threshold stays at the
    tail; a least-squares line would pull it r of the way towards the median and flag good images."""
    rng = np.random.default_rng(1)
    reference = rng.normal(1.0, 0.2, 400)
    base = threshold_from_good_scores(reference, 0.01)
    own = 1.0 + 0.6 * (reference - 1.0) + 0.8 * rng.normal(0.0, 0.2, reference.size)
    t, how = transferred_threshold(base, reference, own)
    assert 0.5 < how["r"] < 0.7
    assert t.value - own.mean() > 0.9 * (base.value - reference.mean())
    assert (own > t.value).mean() < 0.03  # about the asked 1 % of its own good scores, not the 5–10 % of a shrunk line
    anti, how = transferred_threshold(base, reference, 2.0 - reference)  # scores that fall as FP32's rise
    assert how["method"] == "own quantile"
    assert anti.value == pytest.approx(threshold_from_good_scores(2.0 - reference, 0.01).value)


def test_sensitivity_moves_the_verdict():
    assert not is_anomalous(0.4, 0.5)
    assert is_anomalous(0.4, 0.5, sensitivity=1.5)
    with pytest.raises(ValueError):
        is_anomalous(0.4, 0.5, sensitivity=0)


def test_too_few_validation_images_for_the_rate_is_flagged():
    assert threshold_warning(threshold_from_good_scores(np.ones(30), 0.01)) is not None
    assert threshold_warning(threshold_from_good_scores(np.ones(100), 0.01)) is None
    with pytest.raises(ValueError, match="no good-image scores"):
        threshold_from_good_scores(np.array([]))
