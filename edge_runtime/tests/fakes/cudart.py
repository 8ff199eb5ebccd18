"""A fake cuda-python runtime module (`cuda.cudart` in 11.x/12.0–12.5, `cuda.bindings.runtime` from 12.6).

Calls return `(cudaError_t, *values)` as cuda-python does. Version differences, from the cuda-python and CUDA
Runtime API references:
* `cudaGraphInstantiate`: CUDA 11 `(graph, bufferSize)` → (err, exec, errorNode, log); CUDA 12+
  `(graph, flags)` → (err, exec). `cudaGraphInstantiateWithFlags(graph, flags)` → (err, exec) from CUDA 11.4.
* A binding newer than the driver imports fine and fails every call with `cudaErrorInsufficientDriver` (35):
  what cuda-python 13 does on this machine, and cuda-python 12 on JetPack 5's CUDA 11.4 driver.
* Stream capture (CUDA Runtime API, cudaStreamBeginCapture / cudaStreamEndCapture): a capture-illegal call on a
  capturing stream, such as cudaStreamSynchronize, fails with cudaErrorStreamCaptureUnsupported and invalidates
  the capture; the stream stays in capture mode until cudaStreamEndCapture, which then returns
  cudaErrorStreamCaptureInvalidated and no graph.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass

from .gpu import FakeGpu


class cudaError_t(enum.IntEnum):  # noqa: N801  (cuda-python's name)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalAddress = 700
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes
    major: int
    minor: int
    integrated: int
    totalGlobalMem: int  # noqa: N815
    multiProcessorCount: int  # noqa: N815


def make_cudart(gpu: FakeGpu, major: int = 12, driver_ok: bool = True, with_flags: bool = True) -> types.ModuleType:
    """A runtime module of cuda-python `major` on `gpu`; `driver_ok=False` is a binding newer than the driver;
    `with_flags=False` leaves out cudaGraphInstantiateWithFlags (to exercise the cudaGraphInstantiate forms)."""
    rt = types.ModuleType("cuda.bindings.runtime" if major >= 12 else "cuda.cudart")
    ok = cudaError_t.cudaSuccess
    state = {"device": 0}

    def fails(*_: object, **__: object) -> tuple:
        return (cudaError_t.cudaErrorInsufficientDriver, None)

    def call(fn):
        return fn if driver_ok else fails

    def get_error_string(err):
        return (ok, f"fake {cudaError_t(int(err)).name}".encode())

    def get_device_count():
        return (ok, 1)

    def get_device_properties(index):
        if index != 0:
            return (cudaError_t.cudaErrorInvalidValue, None)
        return (ok, cudaDeviceProp(gpu.name.encode() + b"\0\0", *gpu.compute_capability, int(gpu.integrated),
                                   gpu.total_memory, gpu.sm_count))

    def set_device(index):
        if index != 0:
            return (cudaError_t.cudaErrorInvalidValue,)
        state["device"] = index
        gpu.record("cudaSetDevice", index)
        return (ok,)

    def stream_create(flags):
        return (ok, gpu.create_stream())

    def host_alloc(nbytes, flags):
        return (ok, gpu.alloc("mapped" if flags == rt.cudaHostAllocMapped else "host", nbytes))

    def host_get_device_pointer(ptr, flags):
        return (ok, ptr)       # unified addressing on an integrated GPU: the same address

    def malloc(nbytes):
        return (ok, gpu.alloc("device", nbytes))

    def memcpy_async(dst, src, nbytes, kind, stream):
        gpu.enqueue(stream, lambda: gpu.memmove(dst, src, nbytes))
        return (ok,)

    def stream_sync(stream):
        if gpu.capturing(stream):                           # capture-illegal: it invalidates the capture
            gpu.invalidate_capture(stream)
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        return (ok,)

    def begin_capture(stream, mode):
        gpu.begin_capture(stream)
        return (ok,)

    def end_capture(stream):
        graph = gpu.end_capture(stream)
        return (ok, graph) if graph is not None else (cudaError_t.cudaErrorStreamCaptureInvalidated, None)

    def instantiate_with_flags(graph, flags):
        return (ok, gpu.instantiate(graph))

    def instantiate(graph, second):
        exe = gpu.instantiate(graph)
        return (ok, exe) if major >= 12 else (ok, exe, None, b"")

    def graph_launch(exe, stream):
        gpu.launch(exe, stream)
        return (ok,)

    def freer(kinds):
        def free(ptr):
            gpu.free(ptr, kinds)
            return (ok,)
        return free

    def destroy_graph(handle):
        gpu.destroy_graph(handle)
        return (ok,)

    def destroy_stream(stream):
        gpu.destroy_stream(stream)
        return (ok,)

    rt.cudaError_t = cudaError_t
    rt.cudaMemcpyKind = cudaMemcpyKind
    rt.cudaStreamCaptureMode = cudaStreamCaptureMode
    rt.cudaStreamNonBlocking = 1
    rt.cudaHostAllocDefault = 0
    rt.cudaHostAllocMapped = 2
    rt.cudaGetErrorString = get_error_string
    rt.cudaGetDeviceCount = call(get_device_count)
    rt.cudaGetDeviceProperties = call(get_device_properties)
    rt.cudaSetDevice = call(set_device)
    rt.cudaStreamCreateWithFlags = call(stream_create)
    rt.cudaHostAlloc = call(host_alloc)
    rt.cudaHostGetDevicePointer = call(host_get_device_pointer)
    rt.cudaMalloc = call(malloc)
    rt.cudaMemcpyAsync = call(memcpy_async)
    rt.cudaStreamSynchronize = call(stream_sync)
    rt.cudaStreamBeginCapture = call(begin_capture)
    rt.cudaStreamEndCapture = call(end_capture)
    rt.cudaGraphInstantiate = call(instantiate)
    if with_flags:
        rt.cudaGraphInstantiateWithFlags = call(instantiate_with_flags)
    rt.cudaGraphLaunch = call(graph_launch)
    rt.cudaGraphExecDestroy = call(destroy_graph)
    rt.cudaGraphDestroy = call(destroy_graph)
    rt.cudaFree = call(freer(("device",)))
    rt.cudaFreeHost = call(freer(("host", "mapped")))
    rt.cudaStreamDestroy = call(destroy_stream)
    return rt
