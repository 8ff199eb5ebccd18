"""Build and run a tiny engine with real TensorRT and compare it with ONNX Runtime.

Runs only where TensorRT (a real one: `tensorrt.Builder` exists) and a CUDA GPU are present; elsewhere the
whole module is collected and skipped with the reason. This is what the fakes of the contract tests stand
in for: run it (`pytest -m tensorrt`) on a Jetson or a dGPU.
"""

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_runtime.tensorrt import versions

pytestmark = pytest.mark.tensorrt

_trt, _why = versions.probe_tensorrt()
if _trt is None:
    pytest.skip(f"needs TensorRT: {_why}", allow_module_level=True)

from edge_runtime.tensorrt import (  # noqa: E402
    BuildSettings,
    CudaUnavailable,
    TensorRTBackend,
    build_engine,
    find_cached_engine,
    query_device,
)

try:
    DEVICE = query_device()
except CudaUnavailable as exc:
    pytest.skip(f"needs a CUDA GPU: {exc}", allow_module_level=True)

H, W = 16, 24


def _tiny_slsg_like_onnx(path: Path) -> None:
    """image uint8 [N,H,W,3] → anomaly_map = sigmoid(channel mean / 64 - 2) [N,1,H,W]; score = mean [N]."""
    from onnx import TensorProto, helper, save

    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceMean", ["nchw"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["m", "scale"], ["ms"]),
        helper.make_node("Sub", ["ms", "two"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["anomaly_map"]),
        helper.make_node("ReduceMean", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", H, W, 3])],
        [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, H, W]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 64]),
         helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "model.slsg"
    root.mkdir()
    _tiny_slsg_like_onnx(root / "model.onnx")
    sha = hashlib.sha256((root / "model.onnx").read_bytes()).hexdigest()
    manifest = {"models": {"fp32": "model.onnx"}, "files": {"model.onnx": {"sha256": sha}},
                "input": {"shape": ["N", H, W, 3]}}
    return SimpleNamespace(root=root, manifest=manifest)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)


def _ort(bundle, frames):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle.root / "model.onnx"), providers=["CPUExecutionProvider"])
    amap, score = sess.run(None, {"image": frames})
    return amap[:, 0], score


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-5), ("fp16", 2e-3)])
def test_engine_matches_onnx_runtime(bundle, frames, precision, tol):
    result = build_engine(bundle, BuildSettings(precision=precision, max_batch=2))
    ref_maps, ref_scores = _ort(bundle, frames)
    with TensorRTBackend(result.engine_path) as backend:
        out = backend.run(frames)      # 3 frames through a max-batch-2 engine: two chunks
        assert backend.name == f"tensorrt-{precision}"
        assert backend.infer_only() > 0
    assert backend.closed
    assert out.maps.shape == (3, H, W) and out.maps.dtype == np.float32 and out.score.shape == (3,)
    np.testing.assert_allclose(out.maps, ref_maps, atol=tol)
    np.testing.assert_allclose(out.score, ref_scores, atol=tol)


def test_second_build_reuses_the_cached_engine(bundle):
    first = build_engine(bundle, BuildSettings(precision="fp32", max_batch=2))
    again = build_engine(bundle, BuildSettings(precision="fp32", max_batch=2))
    assert again.cached and again.engine_path == first.engine_path
    assert find_cached_engine(bundle, "fp32") == first.engine_path


def test_cuda_graph_replay_gives_the_same_outputs(bundle, frames):
    path = build_engine(bundle, BuildSettings(precision="fp32", max_batch=2)).engine_path
    with TensorRTBackend(path) as plain, TensorRTBackend(path, use_cuda_graph=True) as graphed:
        a = plain.run(frames[:2])
        graphed.run(frames[:2])
        b = graphed.run(frames[:2])     # second call replays the captured graph
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.score, b.score)


def test_legacy_calibrator_builds_an_int8_engine(bundle, frames, tmp_path):
    from edge_runtime.tensorrt.versions import api_plan

    if not api_plan(_trt.__version__).legacy_calibrator:
        pytest.skip(f"TensorRT {_trt.__version__} has no implicit INT8 calibration")
    np.save(bundle.root / "frames.npy", np.concatenate([frames] * 4))
    bundle.manifest["calibration"] = {"tensors": "frames.npy"}
    result = build_engine(bundle, BuildSettings(precision="int8", legacy_calibrator=True, max_batch=2))
    cache = result.record["calibration_cache"]
    assert cache and (result.engine_path.parent / cache).is_file()
    with TensorRTBackend(result.engine_path) as backend:
        assert backend.run(frames).score.shape == (3,)


def test_an_unclosed_backend_exits_cleanly(bundle):
    """pycuda aborts at exit when a context is still pushed; cuda-python must not leak either."""
    import subprocess
    import sys

    path = build_engine(bundle, BuildSettings(precision="fp32", max_batch=2)).engine_path
    code = ("import sys, numpy as np; from edge_runtime.tensorrt import TensorRTBackend; "
            f"b = TensorRTBackend({str(path)!r}); b.run(np.zeros((1, {H}, {W}, 3), np.uint8)); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    assert "context stack was not empty" not in proc.stderr
