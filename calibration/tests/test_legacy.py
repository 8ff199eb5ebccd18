from __future__ import annotations

import numpy as np
import pytest

from calibration import legacy
from calibration.legacy import CalibratorCore, EntropyCalibrator


def test_batches_walk_the_tensors_and_stop_at_a_partial_batch(tmp_path):
    tensors = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    copied = []

    def fake_copy(batch: np.ndarray) -> int:
        copied.append(batch.copy())
        return 1000 + len(copied)

    core = CalibratorCore(tensors, tmp_path / "calib.cache", batch_size=2, copy_to_device=fake_copy)
    assert core.get_batch_size() == 2
    assert core.get_batch(["image"]) == [1001]
    assert core.get_batch(["image"]) == [1002]
    assert core.get_batch(["image"]) is None
    assert np.array_equal(copied[0], tensors[:2]) and np.array_equal(copied[1], tensors[2:4])


def test_cache_round_trip(tmp_path):
    core = CalibratorCore(np.zeros((2, 2, 2, 3), np.uint8), tmp_path / "sub" / "calib.cache")
    assert core.read_calibration_cache() is None
    core.write_calibration_cache(memoryview(b"TRT-8601-EntropyCalibration2\nimage: 3c010204\n"))
    assert core.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\nimage: 3c010204\n"


def test_bad_inputs_and_missing_copy_function(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        CalibratorCore(np.zeros((2, 2, 2, 3), np.float32), tmp_path / "c")
    with pytest.raises(ValueError, match="batch size"):
        CalibratorCore(np.zeros((2, 2, 2, 3), np.uint8), tmp_path / "c", batch_size=3)
    with pytest.raises(RuntimeError, match="copy_to_device"):
        CalibratorCore(np.zeros((2, 2, 2, 3), np.uint8), tmp_path / "c").get_batch(["image"])


def test_entropy_calibrator_says_what_to_do_without_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setattr(legacy, "tensorrt_module", lambda: None)
    with pytest.raises(RuntimeError, match="model.int8.onnx"):
        EntropyCalibrator(np.zeros((2, 2, 2, 3), np.uint8), tmp_path / "c")


@pytest.mark.tensorrt
def test_entropy_calibrator_is_a_tensorrt_calibrator(tmp_path):
    trt = legacy.tensorrt_module()
    if trt is None:
        pytest.skip("TensorRT ≤ 10 is not installed here")
    cal = EntropyCalibrator(np.zeros((2, 2, 2, 3), np.uint8), tmp_path / "c")
    assert isinstance(cal, trt.IInt8EntropyCalibrator2) and cal.get_batch_size() == 1
