"""The TensorRT layer's contract, walked end to end for every supported TensorRT: build → cache → load →
run → close, against fakes of NVIDIA's bindings written from NVIDIA's sources (edge_runtime.tests.fakes).

Asserted per release: the calls made, their order and arguments (network flags, builder flags, profile,
device selection before deserialisation, execute v2/v3, input shapes), the outputs (map, score, every
`score_<head>`), and that every resource — TensorRT objects, CUDA memory, streams, graphs, pycuda contexts —
is released in order.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from edge_runtime.tensorrt import BuildSettings, TensorRTBackend, build_engine, find_cached_engine
from edge_runtime.tests.fakes.gpu import FakeGpu
from edge_runtime.tests.fakes.tensorrt import CONTRACT
from edge_runtime.tests.trt_bundles import HEADS, H, W, expected, frames, make_trt_bundle

JETSON = {"name": "Orin (nvgpu)", "compute_capability": (8, 7), "integrated": True, "sm_count": 16,
          "dla_cores": 2}
DGPU = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": (8, 9), "integrated": False, "sm_count": 128,
        "total_memory": 24 << 30, "dla_cores": 0}
#: release → (CUDA binding it ships with, device). JetPack 5.1 = CUDA 11.4: cuda-python 11 or pycuda.
WALKS = [("8.5", "cuda-python-11", JETSON), ("8.5", "pycuda", JETSON), ("8.6", "cuda-python-12", JETSON),
         ("10.3", "cuda-python-12", JETSON), ("10.16", "cuda-python-13", DGPU), ("11.1", "cuda-python-13", DGPU)]
#: Network creation flags per release: 1 << EXPLICIT_BATCH (0) on 8.x; none for a weakly typed 10.x build;
#: 1 << STRONGLY_TYPED (0 in 11.1's NvInfer.h) on 11.x, where the fp16 build is the FP16 file.
NETWORK_FLAGS = {"8.5": 1, "8.6": 1, "10.3": 0, "10.16": 0, "11.1": 1}
BUILDER_FLAGS = {"8.5": ["FP16", "PREFER_PRECISION_CONSTRAINTS"], "8.6": ["FP16", "PREFER_PRECISION_CONSTRAINTS"],
                 "10.3": ["FP16", "PREFER_PRECISION_CONSTRAINTS"],
                 "10.16": ["FP16", "PREFER_PRECISION_CONSTRAINTS"], "11.1": []}


def test_every_supported_release_is_walked():
    assert sorted({w[0] for w in WALKS}) == sorted(CONTRACT)


def _quiet() -> Console:
    return Console(file=io.StringIO())


def _trt_calls(fake, names: tuple[str, ...]) -> list[tuple]:
    return [c for c in fake.gpu.calls if c[0] in names]


@pytest.mark.parametrize("release, binding, device", WALKS, ids=[f"{r}-{b}" for r, b, _ in WALKS])
def test_build_cache_load_run_close(tmp_path, fake_trt, release, binding, device):
    fake = fake_trt(release, binding, gpu=FakeGpu(**device))
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    settings = BuildSettings(precision="fp16", max_batch=4, workspace_mb=64)

    # build: the calls, in order, with this release's arguments
    built = build_engine(bundle, settings, console=_quiet())
    assert not built.cached and built.engine_path.is_file()
    names = [c[0] for c in fake.gpu.calls if c[0].startswith("trt.")]
    assert names[:4] == ["trt.Builder", "trt.create_network", "trt.OnnxParser", "trt.parse_from_file"]
    assert names.index("trt.add_optimization_profile") < names.index("trt.build_serialized_network")
    assert _trt_calls(fake, ("trt.create_network",)) == [("trt.create_network", NETWORK_FLAGS[release])]
    onnx_name = "model.fp16.onnx" if release == "11.1" else "model.onnx"
    assert _trt_calls(fake, ("trt.parse_from_file",)) == [("trt.parse_from_file", onnx_name)]
    assert [c[1] for c in _trt_calls(fake, ("trt.set_flag",))] == BUILDER_FLAGS[release]
    assert _trt_calls(fake, ("trt.set_memory_pool_limit",)) == [("trt.set_memory_pool_limit", "WORKSPACE", 64 << 20)]
    [(_, profile)] = _trt_calls(fake, ("trt.add_optimization_profile",))
    assert profile == {"image": ((1, H, W, 3), (4, H, W, 3), (4, H, W, 3))}
    assert built.key.max_batch == 4 and built.key.tensorrt_version == fake.release.version
    assert built.key.sm_count == device["sm_count"]
    assert fake.gpu.live() == [], "the build left CUDA resources behind"

    # cache: the same request is a trusted hit and builds nothing; the runtime finds it
    builders = names.count("trt.Builder")
    again = build_engine(bundle, settings, console=_quiet())
    assert again.cached and again.engine_path == built.engine_path
    assert [c[0] for c in fake.gpu.calls].count("trt.Builder") == builders
    assert find_cached_engine(bundle, "fp16") == built.engine_path

    # load: the device is selected before the engine is deserialised
    mark = len(fake.gpu.calls)
    backend = TensorRTBackend(built.engine_path)
    load = [c[0] for c in fake.gpu.calls[mark:]]
    select = "cudaSetDevice" if binding.startswith("cuda-python") else "stream-create"
    assert load.index(select) < load.index("trt.deserialize_cuda_engine") < load.index("trt.create_execution_context")
    assert backend.name == "tensorrt-fp16" and backend.model == "fp16" and backend.max_batch == 4
    assert backend.input_size == (H, W)

    # run: 6 frames through a max-batch-4 engine = chunks of 4 and 2, with their input shapes
    mark = len(fake.gpu.calls)
    batch = frames(6)
    out = backend.run(batch)
    maps, score, heads = expected(batch)
    np.testing.assert_allclose(out.maps, maps, rtol=1e-6)
    np.testing.assert_allclose(out.score, score, rtol=1e-6)
    assert set(out.heads) == set(HEADS)
    for head in HEADS:
        np.testing.assert_allclose(out.heads[head], heads[head], rtol=1e-6)
    run = fake.gpu.calls[mark:]
    assert [c[2][0] for c in run if c[0] == "trt.set_input_shape"] == [4, 2]
    assert [c[1] for c in run if c[0] == "trt.enqueue"] == [4, 2]
    copies = [c[0] for c in fake.gpu.calls if c[0].startswith("alloc-")]
    assert set(copies) == ({"alloc-mapped"} if device["integrated"] else {"alloc-host", "alloc-device"})
    if binding == "pycuda":
        assert fake.pycuda.context_stack == [], "a pycuda context stayed pushed between calls"
    assert backend.infer_only() > 0

    # close: TensorRT objects first (context, engine, runtime), then CUDA memory and the stream; nothing left
    mark = len(fake.gpu.calls)
    backend.close()
    backend.close()                         # idempotent
    closing = [c[0] for c in fake.gpu.calls[mark:]]
    assert closing.index("trt.context-destroyed") < closing.index("trt.engine-destroyed") \
        < closing.index("trt.runtime-destroyed") < min(i for i, n in enumerate(closing) if n.startswith("free-"))
    assert fake.gpu.live() == []
    if binding == "pycuda":
        fake.pycuda.assert_clean_exit()
        assert fake.pycuda.state["retained"] == 0
    with pytest.raises(RuntimeError, match="closed"):
        backend.run(batch[:1])


@pytest.mark.parametrize("release", ["10.3", "11.1"])
def test_an_int8_engine_is_judged_by_the_threshold_of_the_file_it_was_built_from(tmp_path, fake_trt, release):
    fake_trt(release, "cuda-python-12")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = build_engine(bundle, BuildSettings(precision="int8"), console=_quiet()).engine_path
    with TensorRTBackend(path) as backend:
        assert backend.name == "tensorrt-int8" and backend.model == "int8-s8"
        assert backend.model in bundle.models  # so `threshold_for` finds that file's own threshold, not FP32's


@pytest.mark.parametrize("release, binding", [("8.5", "cuda-python-11"), ("10.3", "cuda-python-12"),
                                              ("11.1", "cuda-python-13")])
def test_cuda_graph_capture_replays_and_is_destroyed(tmp_path, fake_trt, release, binding):
    fake = fake_trt(release, binding)
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=2)      # fixed batch: one graph
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=_quiet()).engine_path
    with TensorRTBackend(path, use_cuda_graph=True) as backend:
        first = backend.run(frames(2, seed=3))
        second = backend.run(frames(2, seed=4))     # replays the captured graph on new inputs
    assert fake.gpu.names("graph-launch") == ["graph-launch", "graph-launch"]
    np.testing.assert_allclose(second.score, expected(frames(2, seed=4))[1], rtol=1e-6)
    assert not np.allclose(first.score, second.score)
    assert fake.gpu.live() == []


@pytest.mark.parametrize("failure", ["enqueue refused", "capture-illegal sync"])
def test_a_failure_inside_graph_capture_ends_the_capture_and_frees_the_partial_graph(tmp_path, fake_trt, failure):
    """Left capturing, the stream fails every later call (and the partial graph leaks); ended, the next run
    captures again and replays."""
    fake = fake_trt("10.3", "cuda-python-12")
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=2)
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=_quiet()).engine_path
    with TensorRTBackend(path, use_cuda_graph=True) as backend:
        cuda, execute, calls = backend._res.cuda, backend._execute, []

        def fails_inside_capture() -> None:
            calls.append(fake.gpu.capturing(cuda.stream_handle))
            if calls[-1] and failure == "enqueue refused":
                raise RuntimeError("TensorRT failed to enqueue")
            if calls[-1]:
                cuda.synchronize()                 # CUDA invalidates the capture
            execute()

        backend._execute = fails_inside_capture
        with pytest.raises(Exception, match="failed to enqueue|cudaStreamSynchronize failed"):
            backend.run(frames(2))
        assert calls == [False, True]
        assert not fake.gpu.capturing(cuda.stream_handle) and "graph" not in fake.gpu.live()
        del backend._execute
        out = backend.run(frames(2, seed=5))     # captures again, then replays
        np.testing.assert_allclose(out.score, expected(frames(2, seed=5))[1], rtol=1e-6)
        assert fake.gpu.names("graph-launch") == ["graph-launch"]
    assert fake.gpu.live() == []
