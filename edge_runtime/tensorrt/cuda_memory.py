"""The few CUDA calls the backend needs — pinned/mapped host memory, device memory, one stream, async
copies, graph capture — behind one small interface, implemented with cuda-python or pycuda."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .cuda_binding import CUDA_HINT, check, cudart_module, pycuda_driver
from .errors import CudaUnavailable


def host_array(address: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A numpy view of raw host memory (pinned by CUDA); the caller keeps the memory alive."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = (ctypes.c_uint8 * nbytes).from_address(address)
    return np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape)


@dataclass
class Allocation:
    host: np.ndarray          # numpy view the CPU reads/writes
    device_ptr: int           # address TensorRT gets (== mapped host memory on zero-copy)
    mapped: bool
    host_ptr: int = 0
    nbytes: int = 0


class CudaMemory(Protocol):
    name: str
    stream_handle: int
    supports_graphs: bool

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype, mapped: bool) -> Allocation: ...
    def to_device(self, a: Allocation) -> None: ...
    def to_host(self, a: Allocation) -> None: ...
    def synchronize(self) -> None: ...
    def begin_capture(self) -> None: ...
    def end_capture(self) -> object: ...
    def launch(self, graph: object) -> None: ...
    def close(self) -> None: ...


class CudaPythonMemory:
    """cuda-python (`cuda.bindings.runtime` / `cuda.cudart`)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, device_index: int = 0):
        rt = cudart_module()
        if rt is None:
            raise CudaUnavailable(f"cuda-python is not installed: {CUDA_HINT}")
        self._rt = rt
        check(rt.cudaSetDevice(device_index), f"cudaSetDevice({device_index})", rt)
        self._stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreate", rt)
        self.stream_handle = int(self._stream)
        self._host: list[int] = []
        self._device: list[int] = []
        self._graphs: list[tuple[object, object]] = []

    def allocate(self, shape, dtype, mapped):
        rt = self._rt
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        flags = rt.cudaHostAllocMapped if mapped else rt.cudaHostAllocDefault
        hptr = int(check(rt.cudaHostAlloc(nbytes, flags), f"cudaHostAlloc({nbytes} bytes)", rt))
        self._host.append(hptr)
        if mapped:
            dptr = int(check(rt.cudaHostGetDevicePointer(hptr, 0), "cudaHostGetDevicePointer", rt))
        else:
            dptr = int(check(rt.cudaMalloc(nbytes), f"cudaMalloc({nbytes} bytes)", rt))
            self._device.append(dptr)
        return Allocation(host_array(hptr, tuple(shape), dtype), dptr, mapped, hptr, nbytes)

    def _copy(self, a: Allocation, to_device: bool) -> None:
        if a.mapped:
            return
        rt = self._rt
        hptr, nbytes = a.host_ptr, a.nbytes
        kind = (rt.cudaMemcpyKind.cudaMemcpyHostToDevice if to_device
                else rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        dst, src = (a.device_ptr, hptr) if to_device else (hptr, a.device_ptr)
        check(rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync", rt)

    def to_device(self, a):
        self._copy(a, True)

    def to_host(self, a):
        self._copy(a, False)

    def synchronize(self):
        check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize", self._rt)

    def begin_capture(self):
        rt = self._rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture", rt)

    def end_capture(self):
        rt = self._rt
        graph = check(rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture", rt)
        exe = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate", rt)
        self._graphs.append((graph, exe))
        return exe

    def launch(self, graph):
        check(self._rt.cudaGraphLaunch(graph, self._stream), "cudaGraphLaunch", self._rt)

    def close(self):
        rt = self._rt
        for graph, exe in self._graphs:
            rt.cudaGraphExecDestroy(exe)
            rt.cudaGraphDestroy(graph)
        for p in self._device:
            rt.cudaFree(p)
        for p in self._host:
            rt.cudaFreeHost(p)
        rt.cudaStreamDestroy(self._stream)
        self._graphs, self._device, self._host = [], [], []


class PyCudaMemory:
    """pycuda, when it is what the Jetson image has; no CUDA-graph capture through it."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, device_index: int = 0):
        drv = pycuda_driver()
        if drv is None:
            raise CudaUnavailable(f"pycuda is not installed: {CUDA_HINT}")
        self._drv = drv
        try:
            drv.init()
            self._ctx = drv.Device(device_index).retain_primary_context()
            self._ctx.push()
            self._stream = drv.Stream()
        except drv.Error as exc:
            raise CudaUnavailable(f"pycuda could not open CUDA device {device_index}: {exc}") from exc
        self.stream_handle = int(self._stream.handle)
        self._dev: dict[int, object] = {}

    def allocate(self, shape, dtype, mapped):
        drv = self._drv
        flags = drv.host_alloc_flags.DEVICEMAP if mapped else 0
        host = drv.pagelocked_empty(tuple(shape), np.dtype(dtype), mem_flags=flags)
        if mapped:
            return Allocation(host, int(host.base.get_device_pointer()), True)
        dev = drv.mem_alloc(max(1, host.nbytes))
        a = Allocation(host, int(dev), False)
        self._dev[id(a)] = dev
        return a

    def to_device(self, a):
        if not a.mapped:
            self._drv.memcpy_htod_async(self._dev[id(a)], a.host, self._stream)

    def to_host(self, a):
        if not a.mapped:
            self._drv.memcpy_dtoh_async(a.host, self._dev[id(a)], self._stream)

    def synchronize(self):
        self._stream.synchronize()

    def begin_capture(self):
        raise CudaUnavailable("CUDA-graph capture needs cuda-python; pycuda cannot (use_cuda_graph=False)")

    end_capture = begin_capture

    def launch(self, graph):
        raise CudaUnavailable("CUDA-graph launch needs cuda-python")

    def close(self):
        self._dev.clear()
        self._ctx.pop()


def open_cuda(device_index: int = 0) -> CudaMemory:
    """cuda-python when installed, else pycuda; CudaUnavailable names both ways out."""
    if cudart_module() is not None:
        return CudaPythonMemory(device_index)
    if pycuda_driver() is not None:
        return PyCudaMemory(device_index)
    raise CudaUnavailable(f"no CUDA Python binding is installed: {CUDA_HINT}")
