"""A fake cuda-python runtime module (`cuda.cudart` in 11.x/12.0–12.5, `cuda.bindings.runtime` from 12.6).

Calls return `(cudaError_t, *values)` as cuda-python does. Version differences, from the cuda-python and CUDA
Runtime API references:
* `cudaGraphInstantiate`: CUDA 11 `(graph, bufferSize)` → (err, exec, errorNode, log); CUDA 12+
  `(graph, flags)` → (err, exec). `cudaGraphInstantiateWithFlags(graph, flags)` → (err, exec) from CUDA 11.4.
* A binding newer than the driver imports fine and fails every call with `cudaErrorInsufficientDriver` (35):
  what cuda-python 13 does on this machine, and cuda-python 12 on JetPack 5's CUDA 11.4 driver.
* Streams are `cudaStream_t` objects. cuda-bindings 13.0.0 deprecates `int(obj)` for their address ("Using
  int(cuda_obj) to retrieve the underlying address of a CUDA object is deprecated", release notes) in favour of
  `cuda.bindings.utils.get_cuda_native_handle` (`make_utils`); runtime calls take the object or an int.
* Stream capture (CUDA Runtime API, cudaStreamBeginCapture / cudaStreamEndCapture): a capture-illegal call on a
  capturing stream, such as cudaStreamSynchronize, fails with cudaErrorStreamCaptureUnsupported and invalidates
  the capture; the stream stays in capture mode until cudaStreamEndCapture, which then returns
  cudaErrorStreamCaptureInvalidated and no graph.
"""

from __future__ import annotations

import enum
import types
import warnings
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


class cudaStream_t:  # noqa: N801  (cuda-python's name)
    """A stream handle object; `int()` of it warns from cuda-bindings 13 on."""

    def __init__(self, address: int, major: int):
        self._address, self._major = int(address), major

    def __int__(self) -> int:
        if self._major >= 13:
            warnings.warn("Using int(cuda_obj) to retrieve the underlying address of a CUDA object is deprecated; "
                          "use cuda.bindings.utils.get_cuda_native_handle", DeprecationWarning, stacklevel=2)
        return self._address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, cudaStream_t) and other._address == self._address

    def __hash__(self) -> int:
        return hash(self._address)


def address(handle: object) -> int:
    """What a runtime call does with a stream argument: a cudaStream_t object or a plain int."""
    return handle._address if isinstance(handle, cudaStream_t) else int(handle)


def make_utils() -> types.ModuleType:
    """`cuda.bindings.utils` (cuda-bindings 12.9.1 and 13.x)."""
    utils = types.ModuleType("cuda.bindings.utils")
    utils.get_cuda_native_handle = address
    return utils


def make_cudart(gpu: FakeGpu, major: int = 12, driver_ok: bool = True, with_flags: bool = True,
                faults: dict | None = None) -> types.ModuleType:
    """A runtime module of cuda-python `major` on `gpu`; `driver_ok=False` is a binding newer than the driver;
    `with_flags=False` leaves out cudaGraphInstantiateWithFlags (to exercise the cudaGraphInstantiate forms);
    `faults` maps a function name to the error it returns, doing nothing (a device after a fault)."""
    rt = types.ModuleType("cuda.bindings.runtime" if major >= 12 else "cuda.cudart")
    ok = cudaError_t.cudaSuccess
    state = {"device": 0}
    faults = faults or {}

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
        return (ok, cudaStream_t(gpu.create_stream(), major))

    def host_alloc(nbytes, flags):
        return (ok, gpu.alloc("mapped" if flags == rt.cudaHostAllocMapped else "host", nbytes))

    def host_get_device_pointer(ptr, flags):
        return (ok, ptr)       # unified addressing on an integrated GPU: the same address

    def malloc(nbytes):
        return (ok, gpu.alloc("device", nbytes))

    def memcpy_async(dst, src, nbytes, kind, stream):
        gpu.enqueue(address(stream), lambda: gpu.memmove(dst, src, nbytes))
        return (ok,)

    def stream_sync(stream):
        if gpu.capturing(address(stream)):                  # capture-illegal: it invalidates the capture
            gpu.invalidate_capture(address(stream))
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        return (ok,)

    def begin_capture(stream, mode):
        gpu.begin_capture(address(stream))
        return (ok,)

    def end_capture(stream):
        graph = gpu.end_capture(address(stream))
        return (ok, graph) if graph is not None else (cudaError_t.cudaErrorStreamCaptureInvalidated, None)

    def instantiate_with_flags(graph, flags):
        return (ok, gpu.instantiate(graph))

    def instantiate(graph, second):
        exe = gpu.instantiate(graph)
        return (ok, exe) if major >= 12 else (ok, exe, None, b"")

    def graph_launch(exe, stream):
        gpu.launch(exe, address(stream))
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
        gpu.destroy_stream(address(stream))
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
    for name, err in faults.items():
        setattr(rt, name, lambda *_, err=err, **__: (err,))
    return rt
