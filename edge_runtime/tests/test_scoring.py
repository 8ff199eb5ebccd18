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
)


def test_score_is_the_mean_of_the_top_k_map_values():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 1, 32, 32)).astype(np.float32)
    expected = np.sort(maps.reshape(3, -1), axis=1)[:, -TOP_K:].mean(axis=1)
    np.testing.assert_allclose(image_score(maps), expected, rtol=1e-6)
    assert image_score(np.ones((4, 4), np.float32)).shape == (1,)  # fewer pixels than k: all of them


def test_threshold_is_the_good_score_quantile_for_the_false_reject_rate():
    scores = np.arange(1, 201, dtype=np.float64)
    t = threshold_from_good_scores(scores, 0.05)
    assert t.value == pytest.approx(np.quantile(scores, 0.95))
    assert (scores > t.value).mean() == pytest.approx(0.05, abs=0.005)
    assert t.n_good == 200 and t.quantiles["1"] == 200.0
    assert Threshold.from_dict(t.to_dict()) == t


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
