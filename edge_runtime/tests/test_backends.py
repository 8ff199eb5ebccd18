"""Every backend passes the same contract on real sessions (ONNX Runtime, OpenVINO); select_backend picks
what the bundle and machine allow."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.backends import Backend, BackendError, OnnxRuntimeBackend, best_providers, select_backend
from edge_runtime.backends.openvino_backend import OpenVinoBackend, openvino_available
from edge_runtime.bundle import load_bundle
from edge_runtime.scoring import image_score
from edge_runtime.tests.conftest import SIZE, build_brightness_model

NO_OPENVINO = "openvino is not installed here (pip install 'slsg[openvino]')"


def _openvino(path: Path):
    return OpenVinoBackend(path, precision="fp32", threads=1)


@pytest.fixture(params=["onnxruntime", "openvino"])
def open_backend(request: pytest.FixtureRequest) -> Callable[[Path], Backend]:
    """The same contract tests for every CPU backend, each on a real session over the tiny model."""
    if request.param == "openvino":
        if not openvino_available():
            pytest.skip(NO_OPENVINO)
        return _openvino
    return lambda path: OnnxRuntimeBackend(path, threads=1)


def test_backend_gives_brightness_maps_and_topk_scores(bundle_dir: Path, open_backend) -> None:
    be = open_backend(bundle_dir / "model.onnx")
    assert isinstance(be, Backend) and be.input_size == (SIZE, SIZE) and be.providers
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)  # three frames through a batch-1 model
    out = be.run(batch)
    maps, scores = out.maps, out.score
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_allclose(maps, batch.astype(np.float32).mean(axis=3) / 255.0, atol=1e-6)
    np.testing.assert_allclose(scores, image_score(maps), atol=1e-6)


def test_onnxruntime_backend_runs_on_the_cpu_provider(bundle_dir: Path) -> None:
    assert "CPUExecutionProvider" in OnnxRuntimeBackend(bundle_dir / "model.onnx", threads=1).providers


def test_wrong_input_is_refused_with_a_message(bundle_dir: Path, open_backend) -> None:
    be = open_backend(bundle_dir / "model.onnx")
    with pytest.raises(BackendError, match="uint8"):
        be.run(np.zeros((1, SIZE, SIZE, 3), np.float32))
    with pytest.raises(BackendError, match="prepare"):
        be.run(np.zeros((1, SIZE + 1, SIZE, 3), np.uint8))


def test_dynamic_batch_model_runs_a_batch(tmp_path: Path, open_backend) -> None:
    be = open_backend(build_brightness_model(tmp_path / "m.onnx", batch="N"))
    scores = be.run(np.full((2, SIZE, SIZE, 3), 51, np.uint8)).score
    np.testing.assert_allclose(scores, [0.2, 0.2], atol=1e-6)


def test_a_result_is_not_changed_by_the_next_run(bundle_dir: Path, open_backend) -> None:
    be = open_backend(bundle_dir / "model.onnx")
    first = be.run(np.full((1, SIZE, SIZE, 3), 51, np.uint8))
    be.run(np.full((1, SIZE, SIZE, 3), 204, np.uint8))
    np.testing.assert_allclose(first.score, [0.2], atol=1e-6)
    np.testing.assert_allclose(first.maps, 0.2, atol=1e-6)


def test_a_missing_or_foreign_model_is_refused(tmp_path: Path, open_backend) -> None:
    from onnx import TensorProto, helper, save

    with pytest.raises(BackendError, match="does not exist"):
        open_backend(tmp_path / "absent.onnx")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(tmp_path / "foreign.onnx"))
    with pytest.raises(BackendError, match="not an slsg model"):
        open_backend(tmp_path / "foreign.onnx")


def test_best_providers_orders_tensorrt_cuda_cpu() -> None:
    have = [
        "CPUExecutionProvider",
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        "AzureExecutionProvider",
    ]
    assert best_providers(have) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert best_providers(["AzureExecutionProvider"]) == ["CPUExecutionProvider"]


def test_auto_uses_a_cached_tensorrt_engine_when_the_module_finds_one(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("edge_runtime.tensorrt")
    calls = []

    def find_cached_engine(bundle, precision):
        calls.append(precision)
        return bundle.root / "engines" / "x.engine" if precision == "fp16" else None

    class TensorRTBackend:
        def __init__(self, engine):
            self.engine, self.name, self.providers, self.input_size = (
                engine,
                "trt-fp16",
                ["TensorRT"],
                (SIZE, SIZE),
            )

    fake.find_cached_engine, fake.TensorRTBackend = find_cached_engine, TensorRTBackend
    monkeypatch.setitem(sys.modules, "edge_runtime.tensorrt", fake)
    be = select_backend(load_bundle(bundle_dir), "auto")
    assert calls == ["int8", "fp16"] and be.engine.name == "x.engine"
    with pytest.raises(BackendError, match="slsg-edge build .* --int8"):
        select_backend(load_bundle(bundle_dir), "trt-int8")


def test_missing_precision_or_tensorrt_is_a_clear_error(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = load_bundle(bundle_dir)
    with pytest.raises(BackendError, match="model.fp16.onnx.*--fp16"):
        select_backend(b, "onnx-fp16")
    monkeypatch.setitem(sys.modules, "edge_runtime.tensorrt", None)  # import fails as if absent
    with pytest.raises(BackendError, match="needs TensorRT"):
        select_backend(b, "trt-fp16")
    assert select_backend(b, "auto", threads=1).name in ("onnx:fp32", "openvino:fp32")
    with pytest.raises(BackendError, match="unknown backend"):
        select_backend(b, "tflite")


def test_benchmarks_can_turn_off_spinning_workers(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "session.intra_op.allow_spinning"
    default = OnnxRuntimeBackend(load_bundle(bundle_dir).models["fp32"])
    with pytest.raises(RuntimeError):  # not set: ONNX Runtime's default (spinning) applies
        default.session.get_session_options().get_session_config_entry(key)
    monkeypatch.setenv("SLSG_ORT_SPIN", "0")
    quiet = OnnxRuntimeBackend(load_bundle(bundle_dir).models["fp32"])
    assert quiet.session.get_session_options().get_session_config_entry(key) == "0"


def test_onnx_runtime_runs_the_symmetric_int8_file_as_written(bundle_dir: Path) -> None:
    """Q/DQ fusion off for the symmetric file alone: fused, its s8 activations saturate x86 kernels (TensorRT's
    arithmetic is the file's own); the u8 file keeps ONNX Runtime's integer kernels."""
    key, path = "session.disable_quant_qdq", load_bundle(bundle_dir).models["fp32"]
    symmetric = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"], model="int8-s8")
    assert symmetric.session.get_session_options().get_session_config_entry(key) == "1"
    u8 = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"], model="int8-u8")
    with pytest.raises(RuntimeError):  # not set: ONNX Runtime fuses as usual
        u8.session.get_session_options().get_session_config_entry(key)
