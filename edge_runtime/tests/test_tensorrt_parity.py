"""The numbers trt_check reports, checked against scipy and numpy."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from edge_runtime.tensorrt.parity import average_ranks, latency_ms, max_abs_error, spearman


def test_ranks_average_ties():
    np.testing.assert_array_equal(average_ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_equals_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, 40).astype(float)
    b = a + rng.normal(0, 2, 40)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_of_constant_scores_is_undefined():
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_p99_is_the_99th_percentile_not_the_first():
    s = np.arange(1, 1001) / 1e3          # 1 ms .. 1000 ms
    lat = latency_ms(s)
    assert lat["p99"] == pytest.approx(np.percentile(s * 1e3, 99))
    assert lat["p99"] > 980 and lat["p50"] == pytest.approx(500.5) and lat["n"] == 1000


def test_max_abs_error():
    assert max_abs_error(np.zeros((2, 3)), np.full((2, 3), -0.25)) == 0.25
