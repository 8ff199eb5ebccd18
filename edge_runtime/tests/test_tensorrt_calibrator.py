"""The legacy INT8 entropy calibrator (TensorRT ≤ 10): batching, cache, the pybind override rules, and a
whole `--legacy-calibrator` build through the fakes of TensorRT 8.5 and 10.3."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from edge_runtime.tensorrt import BuildSettings, PrecisionError, build_engine
from edge_runtime.tensorrt.calibrator import CalibratorCore, calibration_dtype, entropy_calibrator
from edge_runtime.tests.fakes.gpu import FakeGpu
from edge_runtime.tests.fakes.tensorrt import RELEASES, PureVirtualCall, _override, make_tensorrt
from edge_runtime.tests.trt_bundles import make_trt_bundle


def _core(tmp_path, n=5, batch=2, copies=None):
    tensors = np.arange(n * 2 * 2 * 3, dtype=np.uint8).reshape(n, 2, 2, 3)

    def copy(b: np.ndarray) -> int:
        if copies is not None:
            copies.append(b.copy())
        return 1000 + len(copies or [])

    return tensors, CalibratorCore(tensors, tmp_path / "calib.cache", batch, copy)


def test_batches_walk_the_frames_and_stop_before_a_partial_batch(tmp_path):
    copies: list = []
    tensors, core = _core(tmp_path, copies=copies)
    assert core.get_batch_size() == 2
    assert core.get_batch(["image"]) == [1001]
    assert core.get_batch(["image"]) == [1002]
    assert core.get_batch(["image"]) is None
    assert np.array_equal(copies[0], tensors[:2]) and np.array_equal(copies[1], tensors[2:4])


def test_cache_round_trip_is_atomic(tmp_path):
    _, core = _core(tmp_path)
    core.cache_path = tmp_path / "sub" / "calib.cache"
    assert core.read_calibration_cache() is None
    core.write_calibration_cache(memoryview(b"TRT-8502-EntropyCalibration2\nimage: 3c010204\n"))
    assert core.read_calibration_cache() == b"TRT-8502-EntropyCalibration2\nimage: 3c010204\n"
    assert [p.name for p in core.cache_path.parent.iterdir()] == ["calib.cache"]


def test_a_generator_or_wrong_frames_are_refused_with_the_reason(tmp_path):
    with pytest.raises(PrecisionError, match="uint8 N×H×W×3 array, got generator"):
        CalibratorCore((f for f in []), tmp_path / "c", 1, int)
    with pytest.raises(PrecisionError, match="uint8"):
        CalibratorCore(np.zeros((2, 2, 2, 3), np.float32), tmp_path / "c", 1, int)
    with pytest.raises(PrecisionError, match="opt batch.*between 1 and the 2 calibration images"):
        CalibratorCore(np.zeros((2, 2, 2, 3), np.uint8), tmp_path / "c", 3, int)


def _calls_through_trampoline(trt, calibrator) -> list:
    """What TensorRT's C++ side does with a calibrator, in the fake: each method through get_type_override."""

    return [_override(calibrator, name)(*args) for name, args in
            (("read_calibration_cache", ()), ("get_batch_size", ()), ("get_batch", (["image"],)))]


def test_a_mixin_listed_after_the_tensorrt_class_is_shadowed_by_its_documentation_stubs(tmp_path):
    """The defect: `class C(trt.IInt8EntropyCalibrator2, CalibratorCore)` — pybind's stubs come first in the
    MRO, so TensorRT finds no override and calls the pure virtual (the process aborts)."""
    trt = make_tensorrt(RELEASES["8.5"], FakeGpu())
    _, core = _core(tmp_path)

    class MixinLast(trt.IInt8EntropyCalibrator2, CalibratorCore):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            CalibratorCore.__init__(self, core.frames, core.cache_path, 2, core.copy_to_device)

    with pytest.raises(PureVirtualCall):
        _calls_through_trampoline(trt, MixinLast())


def test_the_calibrator_overrides_every_method_tensorrt_calls(tmp_path):
    trt = make_tensorrt(RELEASES["10.3"], FakeGpu())
    _, core = _core(tmp_path, copies=[])
    calibrator = entropy_calibrator(trt, core)
    assert isinstance(calibrator, trt.IInt8EntropyCalibrator2)
    assert _calls_through_trampoline(trt, calibrator) == [None, 2, [1001]]


@pytest.mark.parametrize("release, binding", [("8.5", "cuda-python-11"), ("8.5", "pycuda"),
                                              ("10.3", "cuda-python-12")])
def test_legacy_calibrator_build_feeds_profile_opt_batches_from_the_device(tmp_path, fake_trt, release, binding):
    fake = fake_trt(release, binding)
    bundle = make_trt_bundle(tmp_path / "model.slsg", calibration_frames=6)
    settings = BuildSettings(precision="int8", legacy_calibrator=True, max_batch=2)
    result = build_engine(bundle, settings, console=Console(file=io.StringIO()))
    assert result.key.variant == "calib" and result.key.onnx_name == "model.onnx"
    assert ("trt.calibrated", 3) in fake.gpu.calls                    # 6 frames in opt-sized batches of 2
    assert fake.gpu.names("trt.set_calibration_profile") == ["trt.set_calibration_profile"]
    cache = result.engine_path.parent / result.record["calibration_cache"]
    assert cache.read_bytes().startswith(f"TRT-{fake.release.version}-EntropyCalibration2".encode())
    assert fake.gpu.live() == [], "the calibration buffer or stream was not freed"
    if fake.pycuda is not None:
        fake.pycuda.assert_clean_exit()

    build_engine(bundle, BuildSettings(precision="int8", legacy_calibrator=True, max_batch=2, force=True),
                 console=Console(file=io.StringIO()))
    assert fake.gpu.names("trt.calibration-cache-read") == ["trt.calibration-cache-read"]


@pytest.mark.parametrize("release, binding", [("8.5", "cuda-python-11"), ("10.3", "cuda-python-12")])
def test_the_uint8_image_is_fed_to_calibration_as_float32_pixel_values(tmp_path, fake_trt, release, binding):
    """TensorRT reads a non-index calibration input as float32: a buffer of uint8 frames is a quarter of what
    it reads (an illegal address on the device) and its bytes are not the pixel values."""
    fake = fake_trt(release, binding)
    bundle = make_trt_bundle(tmp_path / "model.slsg", calibration_frames=4)
    build_engine(bundle, BuildSettings(precision="int8", legacy_calibrator=True, max_batch=2),
                 console=Console(file=io.StringIO()))
    frames = np.load(bundle.root / "calibration" / "frames.npy")
    read = [c[1] for c in fake.gpu.calls if c[0] == "trt.calibration-batch"]
    expected = [float(frames[i:i + 2].astype(np.float64).mean()) for i in (0, 2)]
    assert read == pytest.approx(expected)
    assert fake.gpu.live() == []


@pytest.mark.parametrize("name, dtype", [("DataType.UINT8", np.float32), ("HALF", np.float32), ("INT8", np.float32),
                                         ("DataType.FLOAT", np.float32), ("INT32", np.int32), ("BOOL", np.bool_)])
def test_calibration_reads_index_types_as_they_are_and_everything_else_as_float32(name, dtype):
    assert calibration_dtype(name) == np.dtype(dtype)


def test_calibration_batches_are_converted_to_the_type_tensorrt_reads(tmp_path):
    copies: list = []
    tensors, core = _core(tmp_path, copies=copies)
    core.get_batch(["image"])
    assert copies[0].dtype == np.float32 and np.array_equal(copies[0], tensors[:2].astype(np.float32))


def test_the_calibration_cache_of_another_tensorrt_is_not_reused(tmp_path, fake_trt):
    bundle = make_trt_bundle(tmp_path / "model.slsg", calibration_frames=4)
    settings = BuildSettings(precision="int8", legacy_calibrator=True, max_batch=2)
    fake_trt("8.5", "cuda-python-11")
    build_engine(bundle, settings, console=Console(file=io.StringIO()))
    newer = fake_trt("8.6", "cuda-python-12")
    build_engine(bundle, settings, console=Console(file=io.StringIO()))
    assert ("trt.calibrated", 2) in newer.gpu.calls and not newer.gpu.names("trt.calibration-cache-read")


def test_too_few_calibration_frames_for_the_batch_say_what_to_do(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg", calibration_frames=3)
    with pytest.raises(PrecisionError, match="calibration batch \\(8, the profile's opt batch\\).*--max-batch"):
        build_engine(bundle, BuildSettings(precision="int8", legacy_calibrator=True, max_batch=8),
                     console=Console(file=io.StringIO()))
    assert fake.gpu.live() == []
