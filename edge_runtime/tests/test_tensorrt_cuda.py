"""CUDA bindings on every JetPack: cuda-python 11.x (JetPack 5.1's CUDA 11.4), 12.x and 13.x call forms,
the fall-back to pycuda when cuda-python imports but cannot reach the driver, and pycuda's context stack."""

from __future__ import annotations

import gc
import io
import logging
import sys
import warnings

import numpy as np
import pytest
from rich.console import Console

from edge_runtime.tensorrt import BuildSettings, CudaUnavailable, DeviceMemoryError, TensorRTBackend, build_engine
from edge_runtime.tensorrt.cuda import CudaPythonMemory, PyCudaMemory, instantiate_graph, open_cuda, query_device
from edge_runtime.tests.fakes.cudart import cudaError_t, make_cudart, make_utils
from edge_runtime.tests.fakes.gpu import FakeGpu
from edge_runtime.tests.trt_bundles import frames, make_trt_bundle


@pytest.mark.parametrize("major, with_flags", [(11, True), (11, False), (12, True), (12, False), (13, True)])
def test_a_captured_graph_instantiates_and_launches_in_every_cuda_python_form(major, with_flags):
    gpu = FakeGpu()
    rt = make_cudart(gpu, major, with_flags=with_flags)
    stream = gpu.create_stream()
    gpu.begin_capture(stream)
    exe = instantiate_graph(rt, gpu.end_capture(stream))
    assert rt.cudaGraphLaunch(exe, stream)[0] == 0     # CUDA 11's 4-tuple here would be refused


def test_cuda_python_newer_than_the_driver_falls_back_to_pycuda(fake_trt):
    fake = fake_trt("8.5", "cuda-python-12+pycuda")            # cuda-python 12 on JetPack 5's CUDA 11.4
    assert isinstance(open_cuda(0), PyCudaMemory)
    dev = query_device(0)
    assert (dev.name, dev.sm_count) == (fake.gpu.name, fake.gpu.sm_count)


def test_no_working_binding_names_every_reason_and_both_ways_out(fake_trt):
    fake_trt("8.5", "cuda-python-13+pycuda", driver_ok=False)
    with pytest.raises(CudaUnavailable) as info:
        open_cuda(0)
    text = str(info.value)
    assert "cuda-python: cudaSetDevice(0) failed with cudaErrorInsufficientDriver" in text
    assert "pycuda: pycuda could not open CUDA device 0" in text
    assert "cuda-python>=11.4,<12" in text and "pycuda" in text


def test_no_binding_at_all_says_what_to_install(fake_trt):
    fake_trt("8.5", "none")
    with pytest.raises(CudaUnavailable, match="no CUDA Python binding is installed.*JetPack 5"):
        query_device(0)


def test_pycuda_memory_pops_its_context_after_every_call(fake_trt):
    fake = fake_trt("8.5", "pycuda")
    mem = PyCudaMemory(0)
    a = mem.allocate((2, 3), np.float32, mapped=False)
    a.host[:] = 7
    mem.to_device(a)
    mem.synchronize()
    assert fake.pycuda.context_stack == []
    mem.close()
    mem.close()
    fake.pycuda.assert_clean_exit()
    assert fake.gpu.live() == [] and fake.pycuda.state["retained"] == 0


def test_an_unclosed_backend_leaves_no_context_pushed_and_is_released_when_dropped(tmp_path, fake_trt):
    fake = fake_trt("8.5", "pycuda")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO())).engine_path
    backend = TensorRTBackend(path)
    backend.run(frames(1))
    fake.pycuda.assert_clean_exit()              # what pycuda checks at interpreter exit, without close()
    del backend
    gc.collect()
    assert fake.gpu.live() == []


def test_the_backend_opens_cuda_on_its_device_before_deserialising(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO())).engine_path
    mark = len(fake.gpu.calls)
    with pytest.raises(CudaUnavailable, match="device 1"):
        TensorRTBackend(path, device_index=1)     # this fake machine has one GPU
    assert "trt.deserialize_cuda_engine" not in [c[0] for c in fake.gpu.calls[mark:]]
    assert fake.gpu.live() == []


def test_cuda_graphs_need_cuda_python(tmp_path, fake_trt):
    fake = fake_trt("8.5", "pycuda")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO())).engine_path
    with pytest.raises(CudaUnavailable, match="use_cuda_graph needs cuda-python"):
        TensorRTBackend(path, use_cuda_graph=True)
    assert fake.gpu.live() == [] and fake.pycuda.context_stack == []


def _memory(monkeypatch, gpu: FakeGpu, major: int = 12, **faults) -> CudaPythonMemory:
    """CudaPythonMemory on a fake runtime of `major`, with that major's cuda.bindings.utils (none before 13)."""
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", make_utils() if major >= 13 else None)
    return CudaPythonMemory(0, make_cudart(gpu, major, faults=faults))


def test_cuda_python_memory_frees_everything_it_allocated(monkeypatch):
    gpu = FakeGpu(integrated=False)
    mem = _memory(monkeypatch, gpu)
    a = mem.allocate((4,), np.float32, mapped=False)
    a.host[:] = [1, 2, 3, 4]
    mem.to_device(a)
    a.host[:] = 0
    mem.to_host(a)
    assert list(a.host) == [1, 2, 3, 4]
    mem.close()
    assert gpu.live() == []


def test_close_checks_every_cuda_return_code_reports_failures_and_still_frees_the_rest(monkeypatch, caplog):
    gpu = FakeGpu(integrated=False)
    mem = _memory(monkeypatch, gpu, cudaFree=cudaError_t.cudaErrorIllegalAddress)   # after a device fault
    for _ in range(2):
        mem.allocate((4,), np.float32, mapped=False)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.tensorrt.cuda"):
        failed = mem.close()
    assert failed == ["cudaFree", "cudaFree"]
    assert caplog.messages == ["cudaFree failed with cudaErrorIllegalAddress"] * 2
    assert gpu.live() == ["device memory", "device memory"]          # host memory and the stream were freed
    assert mem.close() == []


@pytest.mark.parametrize("major", [11, 12, 13])
def test_the_stream_handle_is_the_native_handle_without_deprecated_int(monkeypatch, major):
    """cuda-bindings 13 deprecates int(obj) for a CUDA object's address: get_cuda_native_handle where it exists."""
    gpu = FakeGpu()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        mem = _memory(monkeypatch, gpu, major)
    assert isinstance(mem.stream_handle, int) and gpu.capturing(mem.stream_handle) is False
    mem.close()


def test_a_backend_on_cuda_bindings_13_runs_without_deprecation_warnings(tmp_path, fake_trt):
    fake_trt("10.16", "cuda-python-13")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO())).engine_path
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with TensorRTBackend(path, use_cuda_graph=True) as backend:
            backend.run(frames(1))
            backend.run(frames(1))


def test_an_execution_context_tensorrt_cannot_allocate_is_an_error_naming_memory(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = build_engine(bundle, BuildSettings(precision="fp16", max_batch=4),
                        console=Console(file=io.StringIO())).engine_path
    fake.gpu.free_memory = 1 << 10
    with pytest.raises(DeviceMemoryError, match="out of memory \\(the context needs 18.0 KiB of activation memory\\)"
                                                ".*smaller --max-batch"):
        TensorRTBackend(path)
    assert fake.gpu.live() == []
