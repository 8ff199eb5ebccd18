"""Build and run a tiny engine with real TensorRT and compare it with ONNX Runtime.

Runs only where TensorRT (a real one: `tensorrt.Builder` exists) and a CUDA GPU are present; elsewhere the
whole module is collected and skipped with the reason. This is what the fakes of the contract tests stand
in for: run it (`pytest -m tensorrt`) on a Jetson or a dGPU.
"""

import hashlib
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from edge_runtime.tensorrt import versions

pytestmark = pytest.mark.tensorrt

_trt, _why = versions.probe_tensorrt()
if _trt is None:
    pytest.skip(f"needs TensorRT: {_why}", allow_module_level=True)

from edge_runtime.tensorrt import (  # noqa: E402
    BuildSettings,
    CudaUnavailable,
    EngineMismatch,
    TensorRTBackend,
    build_engine,
    find_cached_engine,
    query_device,
)
from edge_runtime.tensorrt.versions import api_plan  # noqa: E402
from edge_runtime.tests.support import manifest_of  # noqa: E402

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
    manifest = {"models": {"fp32": "model.onnx"}, "files": {"model.onnx": {"sha256": sha, "bytes": 0}},
                "input": {"shape": ["N", H, W, 3]}}
    return SimpleNamespace(root=root, manifest=manifest_of(**manifest))


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)


def _ort(bundle, frames):
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
    if not api_plan(_trt.__version__).legacy_calibrator:
        pytest.skip(f"TensorRT {_trt.__version__} has no implicit INT8 calibration")
    np.save(bundle.root / "frames.npy", np.concatenate([frames] * 4))
    bundle.manifest.calibration = {"tensors": "frames.npy"}
    result = build_engine(bundle, BuildSettings(precision="int8", legacy_calibrator=True, max_batch=2))
    cache = result.record["calibration_cache"]
    assert cache and (result.engine_path.parent / cache).is_file()
    with TensorRTBackend(result.engine_path) as backend:
        assert backend.run(frames).score.shape == (3,)


def test_an_unclosed_backend_exits_cleanly(bundle):
    """pycuda aborts at exit when a context is still pushed; cuda-python must not leak either."""

    path = build_engine(bundle, BuildSettings(precision="fp32", max_batch=2)).engine_path
    code = ("import sys, numpy as np; from edge_runtime.tensorrt import TensorRTBackend; "
            f"b = TensorRTBackend({str(path)!r}); b.run(np.zeros((1, {H}, {W}, 3), np.uint8)); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    assert "context stack was not empty" not in proc.stderr


def test_a_failure_during_graph_capture_leaves_the_stream_usable(bundle, frames):
    """The capture is ended and its partial graph destroyed: the next run captures again and replays."""
    path = build_engine(bundle, BuildSettings(precision="fp32", max_batch=2)).engine_path
    with TensorRTBackend(path, use_cuda_graph=True) as backend:
        execute, calls = backend._execute, []

        def fails_inside_capture() -> None:
            calls.append(len(calls))
            if len(calls) == 2:                  # the first enqueue runs outside the capture, the second inside
                raise RuntimeError("refused inside the capture")
            execute()

        backend._execute = fails_inside_capture
        with pytest.raises(RuntimeError, match="refused inside the capture"):
            backend.run(frames[:2])
        del backend._execute
        first, replay = backend.run(frames[:2]), backend.run(frames[:2])
    np.testing.assert_array_equal(first.maps, replay.maps)


def test_closing_finds_every_cuda_call_succeeding(bundle, frames, caplog):
    path = build_engine(bundle, BuildSettings(precision="fp32", max_batch=2)).engine_path
    backend = TensorRTBackend(path, use_cuda_graph=True)
    backend.run(frames[:2])
    backend.run(frames[:2])
    with caplog.at_level(logging.WARNING, logger="edge_runtime.tensorrt.cuda"):
        backend.close()
    assert not caplog.messages


def _dla_cores() -> int:
    if not api_plan(_trt.__version__).dla:
        return 0
    return int(_trt.Builder(_trt.Logger(_trt.Logger.WARNING)).num_DLA_cores)


@pytest.mark.skipif(_dla_cores() == 0, reason="needs a DLA core (Jetson AGX Orin / Orin NX) and a TensorRT with DLA")
def test_a_dla_engine_profiles_one_batch_and_records_where_its_layers_ran(bundle, frames):
    result = build_engine(bundle, BuildSettings(precision="fp16", max_batch=2, dla_core=0, gpu_fallback=True))
    assert result.record["batch_profile"] == [2, 2, 2]
    placement = result.record["layer_placement"]
    assert placement["source"] == "builder report", "TensorRT logged no 'Layers running on DLA/GPU' report"
    assert placement["dla"], f"nothing ran on DLA: {placement}"
    with TensorRTBackend(result.engine_path) as backend:
        with pytest.raises(EngineMismatch, match="batches of exactly 2"):
            backend.run(frames[:3])
        assert backend.run(frames[:2]).score.shape == (2,)


PLUGIN_C, PLUGIN_N = 8, H * W // 8


def _fused_onnx(path: Path) -> None:
    """image → channel mean / 255 seen as h (N, 8, 48) → slsg.GraphAttention(h, h, h, 0) → its dense context,
    reshaped, is anomaly_map; score = its mean. ONNX Runtime cannot run it: `_dense_context` is the reference."""
    from onnx import TensorProto, helper, save

    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[3], keepdims=0),
        helper.make_node("Div", ["m", "c255"], ["p"]),
        helper.make_node("Reshape", ["p", "node_shape"], ["h"]),
        helper.make_node("GraphAttention", ["h", "h", "h", "rel_pos"], ["max_relative", "context", "neighbours"],
                         domain="slsg", plugin_namespace="slsg", k=27, dilation=3),
        helper.make_node("Reshape", ["context", "map_shape"], ["anomaly_map"]),
        helper.make_node("ReduceMean", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "fused",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", H, W, 3])],
        [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, H, W]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
         helper.make_tensor("node_shape", TensorProto.INT64, [3], [0, PLUGIN_C, PLUGIN_N]),
         helper.make_tensor("map_shape", TensorProto.INT64, [4], [-1, 1, H, W]),
         helper.make_tensor("rel_pos", TensorProto.FLOAT, [PLUGIN_N, PLUGIN_N], [0.0] * PLUGIN_N * PLUGIN_N)])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("slsg", 1)]),
         path)


def _dense_context(frames: np.ndarray) -> np.ndarray:
    """context[c, i] = Σ_j softmax_j(h_i · h_j) h[c, j] with q = v = h, in float64."""
    h = (frames.astype(np.float64).mean(axis=3) / 255.0).reshape(len(frames), PLUGIN_C, PLUGIN_N)
    logits = np.einsum("bci,bcj->bij", h, h)
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("bij,bcj->bci", p, h).reshape(len(frames), H, W)


@pytest.mark.skipif(not api_plan(_trt.__version__).aot_plugins, reason="the fused plugin needs TensorRT ≥ 10.9")
def test_the_fused_plugin_engine_runs_the_aot_kernel(tmp_path, frames):
    pytest.importorskip("triton", reason="building the fused plugin compiles its kernel with Triton")
    root = tmp_path / "fused.slsg"
    root.mkdir()
    _fused_onnx(root / "model.onnx")
    sha = hashlib.sha256((root / "model.onnx").read_bytes()).hexdigest()
    manifest = {"models": {"fp32": "model.onnx"}, "files": {"model.onnx": {"sha256": sha, "bytes": 0}},
                "input": {"shape": ["N", H, W, 3]}, "plugins": ["slsg::GraphAttention"]}
    fake = SimpleNamespace(root=root, manifest=manifest_of(**manifest))
    result = build_engine(fake, BuildSettings(precision="fp32", max_batch=2))
    assert result.key.plugins == ("slsg::GraphAttention",) and result.key.plugin_kernel_sha256
    with TensorRTBackend(result.engine_path) as backend:
        out = backend.run(frames)                # 3 frames: batches of 2 and 1 through the AOT kernel
    np.testing.assert_allclose(out.maps, _dense_context(frames), atol=1e-5)
