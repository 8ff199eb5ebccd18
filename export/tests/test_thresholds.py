"""Held-out good images from another session are named as such, not read as a precision that lost its threshold."""

from __future__ import annotations

import numpy as np

from export.thresholds import session_shift


def test_good_images_of_the_same_session_are_not_called_shifted() -> None:
    rng = np.random.default_rng(0)
    record = session_shift(rng.normal(0, 1, 21), rng.normal(0, 1, 20))
    assert record["low"] < 0.5 < record["high"] and not record["shifted"]
    assert record["note"] is None


def test_good_images_that_score_higher_than_validation_are_called_another_session() -> None:
    rng = np.random.default_rng(0)
    record = session_shift(rng.normal(0, 1, 21), rng.normal(1.5, 1, 20))
    assert record["auroc"] > 0.8 and record["shifted"]
    assert "slsg-edge threshold" in record["note"] and record["n_held_out"] == 20 and record["n_validation"] == 21


def test_lower_scores_on_held_out_images_are_no_shift_to_warn_about() -> None:
    """Fewer false rejects than asked is not a problem the threshold's owner must fix."""
    rng = np.random.default_rng(0)
    assert not session_shift(rng.normal(1.5, 1, 21), rng.normal(0, 1, 20))["shifted"]
