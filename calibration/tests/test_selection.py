from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.selection import (
    CalibrationError,
    load_calibration_set,
    select_calibration_set,
)


@dataclass
class FakeSample:
    path: Path
    split: str
    label: str = "good"


@pytest.fixture()
def good_dir(tmp_path: Path) -> list[Path]:
    """20 good images in capture order; image 7 is the only red one (an outlier for `diverse`)."""
    paths = []
    gen = np.random.default_rng(0)
    for i in range(20):
        img = np.full((24, 24, 3), 100, np.uint8) + gen.integers(0, 10, (24, 24, 3), dtype=np.uint8)
        if i == 7:
            img[..., 2] = 250
        p = tmp_path / "train" / "good" / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


@pytest.mark.parametrize("strategy", ["random", "stratified", "diverse"])
def test_strategies_are_deterministic_by_seed(good_dir, strategy):
    a = select_calibration_set(good_dir, 16, n=5, strategy=strategy, seed=3)
    b = select_calibration_set(good_dir, 16, n=5, strategy=strategy, seed=3)
    assert a.paths == b.paths and np.array_equal(a.tensors, b.tensors)
    assert len(a.paths) == 5 and a.tensors.shape == (5, 16, 16, 3) and a.tensors.dtype == np.uint8


def test_random_seeds_give_different_sets(good_dir):
    picks = {tuple(select_calibration_set(good_dir, 16, n=5, seed=s).paths) for s in range(4)}
    assert len(picks) > 1


def test_stratified_covers_capture_order(good_dir):
    chosen = select_calibration_set(good_dir, 16, n=4, strategy="stratified", seed=1).paths
    slots = sorted(good_dir.index(p) // 5 for p in chosen)
    assert slots == [0, 1, 2, 3]


def test_diverse_picks_the_outlier(good_dir):
    for seed in range(3):
        chosen = select_calibration_set(good_dir, 16, n=2, strategy="diverse", seed=seed).paths
        assert good_dir[7] in chosen


def test_all_images_when_fewer_than_n(good_dir):
    s = select_calibration_set(good_dir[:6], 16, n=256)
    assert s.paths == good_dir[:6]


def test_test_samples_are_refused(good_dir, tmp_path):
    samples = [FakeSample(p, "train") for p in good_dir] + [FakeSample(tmp_path / "x.png", "test")]
    with pytest.raises(CalibrationError, match="test data"):
        select_calibration_set(samples, 16, n=4)
    with pytest.raises(CalibrationError, match="test data"):
        select_calibration_set([*good_dir, tmp_path / "test" / "good" / "000.png"], 16, n=4)
    with pytest.raises(CalibrationError, match="good images"):
        select_calibration_set([FakeSample(good_dir[0], "validation", "broken")], 16)


def test_unknown_strategy_and_unreadable_file(good_dir, tmp_path):
    with pytest.raises(CalibrationError, match="strategy"):
        select_calibration_set(good_dir, 16, strategy="best")
    bad = tmp_path / "train" / "good" / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(CalibrationError, match="broken.png"):
        select_calibration_set([bad], 16)


def test_saved_set_round_trips_without_pickle(good_dir, tmp_path):
    s = select_calibration_set(good_dir, 16, n=5, strategy="stratified", seed=2)
    folder = s.save(tmp_path / "bundle" / "calibration")
    back = load_calibration_set(folder)
    assert back.paths == s.paths and back.sha256 == s.sha256 and back.strategy == "stratified"
    assert np.array_equal(np.load(folder / "tensors.npy", allow_pickle=False), s.tensors)
    assert back.manifest()["n"] == 5 and len(back.sha256[0]) == 64
