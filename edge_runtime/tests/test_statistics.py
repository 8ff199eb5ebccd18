"""The one statistics module, checked against scipy and scikit-learn, and its one rule for degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import statistics as st
from edge_runtime.statistics import binomial_interval, score_shift

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the reference these checks compare with")
sk_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the reference for AUROC")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_auroc_and_correlations_equal_scipy_and_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, 60).astype(float)  # many ties
    b = a + rng.normal(0, 2, 60)
    y = rng.integers(0, 2, 60)
    np.testing.assert_allclose(st.rankdata(a), scipy_stats.rankdata(a))
    assert st.auroc(a, y) == pytest.approx(sk_metrics.roc_auc_score(y, a), abs=1e-12)
    assert st.spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)
    assert st.pearson(a, b) == pytest.approx(scipy_stats.pearsonr(a, b).statistic, abs=1e-12)
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert st.percentile(b, q) == pytest.approx(np.percentile(b, q), abs=1e-12)
    assert st.quantile(b, 0.99) == st.percentile(b, 99)


def test_undefined_statistics_are_nan_never_an_exception_or_a_made_up_value() -> None:
    assert np.isnan(st.auroc([0.1, 0.2, 0.3], [0, 0, 0]))  # one class
    assert np.isnan(st.spearman([1, 1, 1], [1, 2, 3]))  # constant series
    assert np.isnan(st.pearson([2.0, 2.0], [2.0, 2.0]))  # identical constants are not "1.0"
    assert np.isnan(st.spearman([1.0], [1.0]))  # fewer than two
    assert np.isnan(st.percentile([], 50))


def test_wrong_input_raises_with_the_reason() -> None:
    with pytest.raises(ValueError, match="NaN"):
        st.auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="length"):
        st.spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="0.99"):
        st.percentile([1, 2, 3], 0.99 - 1)  # negative q: outside [0, 100]


def test_paired_auroc_difference_sees_a_real_drop_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60), np.ones(40)].astype(bool)
    ref = np.where(y, rng.normal(2.0, 1, 100), rng.normal(0, 1, 100))
    same = ref + rng.normal(0, 1e-3, 100)  # a faithful copy: tiny noise
    broken = ref + rng.normal(0, 3.0, 100)  # a damaged model: most of the signal gone
    noise = st.paired_auroc_difference(ref, same, y, n_boot=500)
    drop = st.paired_auroc_difference(ref, broken, y, n_boot=500)
    assert abs(noise.estimate) < 0.01 and noise.low <= 0.0 <= noise.high and not noise.excludes_zero()
    assert drop.estimate > 0.1 and drop.excludes_zero() and drop.low > 0
    assert drop.estimate == pytest.approx(st.auroc(ref, y) - st.auroc(broken, y))


def test_stratified_bootstrap_keeps_both_classes_in_every_resample() -> None:
    y = np.r_[np.zeros(50), np.ones(2)].astype(bool)  # a resample without stratification often loses a class
    s = np.r_[np.zeros(50), np.ones(2)]
    iv = st.bootstrap(lambda i: st.auroc(s[i], y[i]), y.size, n_boot=300, strata=y)
    assert iv.n_boot == 300 and iv.low == iv.high == 1.0


def test_binomial_interval_holds_the_rate_and_is_not_empty_at_zero_rejects() -> None:
    low, high = binomial_interval(0, 40)
    assert low == 0.0 and 0.05 < high < 0.1  # 0 of 40 still allows a rate up to ~9 %
    low, high = binomial_interval(3, 40)
    assert low < 3 / 40 < high and high < 0.21
    low, high = binomial_interval(10, 1000)
    assert 0.004 < low < 0.01 < high < 0.02


def test_score_shift_finds_new_good_images_that_score_higher_and_only_those() -> None:
    rng = np.random.default_rng(0)
    assert score_shift(rng.normal(0, 1, 60), rng.normal(1.5, 1, 30)).shifted
    assert not score_shift(rng.normal(0, 1, 60), rng.normal(0, 1, 30)).shifted
    assert not score_shift(rng.normal(1.5, 1, 60), rng.normal(0, 1, 30)).shifted


def test_the_paired_auroc_bootstrap_is_the_stratified_bootstrap_of_the_difference_draw_for_draw():
    """The fast path (pair outcomes × draw multiplicities) gives what resampling the scores gives, ties included."""
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(40), np.ones(25)].astype(bool)
    r = np.round(rng.normal(size=65) + y, 1)  # rounded: ties within and across the classes
    c = np.round(r + rng.normal(scale=0.4, size=65), 1)
    fast = st.paired_auroc_difference(r, c, y, n_boot=500, seed=7)
    slow = st.bootstrap(lambda i: st.auroc(r[i], y[i]) - st.auroc(c[i], y[i]), r.size, 500, 0.95, 7, strata=y)
    assert fast.estimate == pytest.approx(slow.estimate, abs=1e-12)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12)
