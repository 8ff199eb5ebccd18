"""The numbers trt_check reports, checked against scipy and numpy."""

import numpy as np
import pytest

from edge_runtime.tensorrt.parity import latency_ms, max_abs_error


def test_p99_is_the_99th_percentile_not_the_first():
    s = np.arange(1, 1001) / 1e3          # 1 ms .. 1000 ms
    lat = latency_ms(s)
    assert lat["p99"] == pytest.approx(np.percentile(s * 1e3, 99))
    assert lat["p99"] > 980 and lat["p50"] == pytest.approx(500.5) and lat["n"] == 1000


def test_max_abs_error():
    assert max_abs_error(np.zeros((2, 3)), np.full((2, 3), -0.25)) == 0.25
