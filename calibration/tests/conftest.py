from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.accuracy import EvalData
from calibration.int8 import Int8Config, compute_ranges, preprocess_for_quantization
from calibration.selection import CalibrationSet
from calibration.tests.tiny_model import anomalous_images, export_tiny_model, good_images


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("calib")


@pytest.fixture(scope="session")
def tiny_onnx(work: Path) -> Path:
    return export_tiny_model(work / "model.onnx")


@pytest.fixture(scope="session")
def calib_set() -> CalibrationSet:
    tensors = good_images(16, 0)
    return CalibrationSet(paths=[Path(f"train/good/{i:03d}.png") for i in range(16)], sha256=["0" * 64] * 16,
                          strategy="random", seed=0, tensors=tensors, source_count=16)


@pytest.fixture(scope="session")
def eval_data() -> EvalData:
    return EvalData(good=good_images(24, 5), anomalous=anomalous_images(24, 6))


@pytest.fixture(scope="session")
def pre_model(work: Path, tiny_onnx: Path) -> Path:
    return preprocess_for_quantization(tiny_onnx, work / "pre.onnx")


@pytest.fixture(scope="session")
def ranges(work: Path, pre_model: Path, calib_set: CalibrationSet) -> dict[str, Path]:
    out = {}
    for method in ("minmax", "percentile", "entropy"):
        cfg = Int8Config(method=method, progress=False, num_bins=320 if method == "entropy" else 2048)
        out[method] = compute_ranges(pre_model, calib_set.tensors, cfg, work / f"ranges_{method}.json")
    return out


def images(n: int, seed: int) -> np.ndarray:
    return good_images(n, seed)
