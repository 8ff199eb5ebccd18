"""Parity runs each backend through evaluate_category and compares the very maps it scored."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.parity import RecordingPredictor, evaluate_backends, map_agreement
from slsg.data import open_dataset
from slsg.data.synthetic_scene import SMALL, write_dataset


def test_map_agreement_numbers() -> None:
    ref = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    same = map_agreement(ref, ref)
    assert same["max_abs"] == 0 and same["correlation"] == pytest.approx(1.0)
    shifted = map_agreement(ref + 0.25, ref)
    assert shifted["max_abs"] == pytest.approx(0.25) and shifted["correlation"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        map_agreement(ref[:2], ref)


def test_recording_predictor_keeps_every_batch_in_order() -> None:
    rec = RecordingPredictor(lambda x: x.mean(axis=-1) / 255.0)
    rec(np.zeros((2, 4, 4, 3), np.uint8))
    rec(np.full((1, 4, 4, 3), 255, np.uint8))
    assert rec.maps.shape == (3, 4, 4) and rec.maps[2].min() == 1.0


def brightness(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32).mean(axis=-1) / 255.0


def test_backends_on_a_synthetic_set(tmp_path) -> None:
    category = open_dataset(write_dataset(tmp_path, counts=SMALL, size=64))[0]
    noisy = lambda x: np.clip(brightness(x) + 0.01, 0, 1)  # noqa: E731
    out = evaluate_backends({"ref": brightness, "noisy": noisy, "inverted": lambda x: 1 - brightness(x)},
                            category, (64, 64), reference="ref")
    b = out["backends"]
    assert b["ref"]["map_max_abs"] == 0 and b["ref"]["auroc_drop_points"] == 0
    assert b["noisy"]["map_max_abs"] == pytest.approx(0.01, abs=1e-6) and b["noisy"]["map_correlation"] > 0.999
    assert b["inverted"]["map_correlation"] == pytest.approx(-1.0)
    assert b["ref"]["images"] == len(category.test) == len(b["ref"]["image_scores"])
    with pytest.raises(ValueError):
        evaluate_backends({"a": brightness}, category, (64, 64), reference="b")
