"""CUDA for the TensorRT layer: which Python binding works here, the GPU it sees, and the few memory,
stream and graph calls the backend needs — behind one interface, implemented with cuda-python or pycuda.

Bindings, in the order tried:
* cuda-python — `cuda.bindings.runtime` (12.6+, 13.x) or `cuda.cudart` (11.x, 12.0–12.5). Its major
  version must match the driver's CUDA: JetPack 5.1 ships CUDA 11.4 (cuda-python 11.x), JetPack 6 CUDA
  12.x. A mismatched one imports but every call fails (`cudaErrorInsufficientDriver`), so a failure to
  open the device falls back to pycuda instead of giving up.
* pycuda — what many JetPack 5 images carry. Its contexts live on a per-thread stack that must be empty
  when the interpreter exits ("PyCUDA ERROR: The context stack was not empty upon module cleanup" aborts
  the process), so every call here pushes the device's primary context and pops it before returning:
  nothing depends on `close()` being called.

Nothing in this module imports a binding at import time or touches a GPU until asked.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, Optional

import numpy as np

from .errors import CudaUnavailable

log = logging.getLogger(__name__)

CUDA_HINT = ("install a CUDA Python binding whose major version matches the driver's CUDA: "
             "JetPack 5 (CUDA 11.4): pip install 'cuda-python>=11.4,<12' or pycuda; "
             "JetPack 6 (CUDA 12): pip install 'cuda-python>=12,<13'; dGPU: the driver's major")


# ---------------------------------------------------------------- bindings

def cudart_module() -> Optional[ModuleType]:
    """cuda-python's runtime module under whichever name this version uses, else None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def pycuda_driver() -> Optional[ModuleType]:
    try:
        return importlib.import_module("pycuda.driver")
    except ImportError:
        return None


def error_name(err: Any) -> str:
    return getattr(err, "name", None) or str(err)


def check(result: Any, what: str, cudart: Optional[ModuleType] = None) -> Any:
    """cuda-python returns (error, *values): raise CudaUnavailable on error, else the value(s)."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        detail = ""
        if cudart is not None and hasattr(cudart, "cudaGetErrorString"):
            _, text = cudart.cudaGetErrorString(err)
            detail = f": {text.decode() if isinstance(text, bytes) else text}"
        raise CudaUnavailable(f"{what} failed with {error_name(err)}{detail}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def native_handle(obj: Any) -> int:
    """The address a cuda-python object (a stream) wraps. cuda-bindings 13.0 (and 12.9.1) deprecate `int(obj)` for
    it in favour of `cuda.bindings.utils.get_cuda_native_handle` (cuda-bindings 13.0.0 release notes); older
    bindings have no such module and `int()` is their way."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


def instantiate_graph(rt: ModuleType, graph: Any) -> Any:
    """An executable graph in every cuda-python major: `cudaGraphInstantiateWithFlags(graph, 0)` exists
    from CUDA 11.4 (JetPack 5.1) on and returns (err, exec) everywhere, while `cudaGraphInstantiate`
    changed form — CUDA 11: (graph, bufferSize) → (err, exec, errorNode, log); CUDA 12: (graph, flags)."""
    if hasattr(rt, "cudaGraphInstantiateWithFlags"):
        return check(rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags", rt)
    values = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate", rt)
    return values[0] if isinstance(values, tuple) else values


# ---------------------------------------------------------------- the device

@dataclass(frozen=True)
class DeviceInfo:
    """What makes an engine valid on a GPU besides TensorRT: every Orin module reports "Orin" and sm_87,
    so the SM count and memory tell an AGX Orin from an Orin Nano."""

    name: str
    compute_capability: tuple[int, int]
    integrated: bool            # shares memory with the CPU (Jetson): mapped zero-copy buffers pay off
    total_memory_bytes: int
    sm_count: int
    index: int = 0

    @property
    def sm(self) -> str:
        return f"{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def memory_mib(self) -> int:
        return int(self.total_memory_bytes) >> 20

    def to_dict(self) -> dict:
        d = asdict(self)
        d["compute_capability"] = f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        return d


def _text(raw: object) -> str:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).split(b"\0", 1)[0].decode(errors="replace").strip()
    return str(raw).strip()


def _query_cuda_python(rt: ModuleType, index: int) -> DeviceInfo:
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount (is the NVIDIA driver installed?)", rt)
    if count <= index:
        raise CudaUnavailable(f"no CUDA device {index}: this machine has {count}")
    prop = check(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties", rt)
    return DeviceInfo(_text(prop.name), (int(prop.major), int(prop.minor)), bool(prop.integrated),
                      int(prop.totalGlobalMem), int(prop.multiProcessorCount), index)


def _query_pycuda(drv: ModuleType, index: int) -> DeviceInfo:
    try:
        drv.init()
        dev = drv.Device(index)
        attr = drv.device_attribute
        return DeviceInfo(str(dev.name()), tuple(dev.compute_capability()),
                          bool(dev.get_attribute(attr.INTEGRATED)), int(dev.total_memory()),
                          int(dev.get_attribute(attr.MULTIPROCESSOR_COUNT)), index)
    except drv.Error as exc:
        raise CudaUnavailable(f"pycuda could not open CUDA device {index}: {exc}") from exc


def _first_that_works(attempts: list[tuple[str, Any]]) -> Any:
    """Run (binding name, thunk) pairs in order; the first result wins, else one error naming every reason."""
    reasons = []
    for name, thunk in attempts:
        try:
            return thunk()
        except CudaUnavailable as exc:
            reasons.append(f"{name}: {exc}")
    if not reasons:
        raise CudaUnavailable(f"no CUDA Python binding is installed: {CUDA_HINT}")
    raise CudaUnavailable("no CUDA binding could open the GPU — " + "; ".join(reasons) + f". {CUDA_HINT}")


def query_device(index: int = 0) -> DeviceInfo:
    """Ask the driver about one GPU: cuda-python, else pycuda; CudaUnavailable says what failed where."""
    attempts = []
    rt, drv = cudart_module(), pycuda_driver()
    if rt is not None:
        attempts.append(("cuda-python", lambda: _query_cuda_python(rt, index)))
    if drv is not None:
        attempts.append(("pycuda", lambda: _query_pycuda(drv, index)))
    return _first_that_works(attempts)


# ---------------------------------------------------------------- memory, stream, graphs

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


class CudaPythonMemory:
    """cuda-python (`cuda.bindings.runtime` / `cuda.cudart`, any major from 11.4)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, device_index: int = 0, rt: Optional[ModuleType] = None):
        rt = rt or cudart_module()
        if rt is None:
            raise CudaUnavailable(f"cuda-python is not installed: {CUDA_HINT}")
        self._rt = rt
        self.device_index = device_index
        check(rt.cudaSetDevice(device_index), f"cudaSetDevice({device_index})", rt)
        self._stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreate", rt)
        self.stream_handle = native_handle(self._stream)
        self._host: list[int] = []
        self._device: list[int] = []
        self._graphs: list[tuple[Any, Any]] = []
        self._closed = False

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Make this device current for the calls inside (TensorRT uses the runtime's current device)."""
        check(self._rt.cudaSetDevice(self.device_index), f"cudaSetDevice({self.device_index})", self._rt)
        yield

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype, mapped: bool) -> Allocation:
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
        kind = (rt.cudaMemcpyKind.cudaMemcpyHostToDevice if to_device
                else rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        dst, src = (a.device_ptr, a.host_ptr) if to_device else (a.host_ptr, a.device_ptr)
        check(rt.cudaMemcpyAsync(dst, src, a.nbytes, kind, self._stream), "cudaMemcpyAsync", rt)

    def to_device(self, a: Allocation) -> None:
        self._copy(a, True)

    def to_host(self, a: Allocation) -> None:
        self._copy(a, False)

    def synchronize(self) -> None:
        check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize", self._rt)

    def capture(self, work: Callable[[], None]) -> Any:
        """An executable graph of what `work` enqueues on the stream. A failure inside ends the capture and
        destroys the partial graph: a stream left capturing fails every later call on it."""
        rt = self._rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture", rt)
        try:
            work()
        except BaseException:
            self._end_failed_capture()
            raise
        graph = check(rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture", rt)
        try:
            exe = instantiate_graph(rt, graph)
        except BaseException:
            self._report(rt.cudaGraphDestroy(graph), "cudaGraphDestroy (graph that did not instantiate)")
            raise
        self._graphs.append((graph, exe))
        return exe

    def _end_failed_capture(self) -> None:
        """Leave capture mode after a failure; a capture CUDA invalidated ends with an error and no graph."""
        result = self._rt.cudaStreamEndCapture(self._stream)
        graph = result[1] if isinstance(result, tuple) and len(result) > 1 else None
        if int(result[0] if isinstance(result, tuple) else result) == 0 and graph is not None:
            self._report(self._rt.cudaGraphDestroy(graph), "cudaGraphDestroy (partial graph)")

    def _report(self, result: Any, what: str) -> bool:
        """Log a failed CUDA call where raising would hide the error being handled; True when it succeeded."""
        err = result[0] if isinstance(result, tuple) else result
        if int(err) == 0:
            return True
        log.warning("%s failed with %s", what, error_name(err))
        return False

    def launch(self, graph: Any) -> None:
        check(self._rt.cudaGraphLaunch(graph, self._stream), "cudaGraphLaunch", self._rt)

    def close(self) -> list[str]:
        """Free graphs, device and host memory, then the stream; safe to call twice. Every call is made even
        when one fails (after a device fault they all fail with the sticky error); each failure is logged as a
        warning and returned — cleanup runs in `close()`, `with` exits and finalizers, where raising would hide
        the error that led there."""
        if self._closed:
            return []
        self._closed = True
        rt = self._rt
        calls = [(rt.cudaGraphExecDestroy, exe, "cudaGraphExecDestroy") for _, exe in self._graphs]
        calls += [(rt.cudaGraphDestroy, graph, "cudaGraphDestroy") for graph, _ in self._graphs]
        calls += [(rt.cudaFree, p, "cudaFree") for p in self._device]
        calls += [(rt.cudaFreeHost, p, "cudaFreeHost") for p in self._host]
        calls.append((rt.cudaStreamDestroy, self._stream, "cudaStreamDestroy"))
        failed = [what for fn, arg, what in calls if not self._report(fn(arg), what)]
        self._graphs, self._device, self._host = [], [], []
        return failed


class PyCudaMemory:
    """pycuda, when it is what the Jetson image has; no CUDA-graph capture through it. Every method pushes
    the primary context and pops it again, so the context stack is empty between calls."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, device_index: int = 0, drv: Optional[ModuleType] = None):
        drv = drv or pycuda_driver()
        if drv is None:
            raise CudaUnavailable(f"pycuda is not installed: {CUDA_HINT}")
        self._drv = drv
        self.device_index = device_index
        try:
            drv.init()
            self._ctx = drv.Device(device_index).retain_primary_context()
        except drv.Error as exc:
            raise CudaUnavailable(f"pycuda could not open CUDA device {device_index}: {exc}") from exc
        self._device: dict[int, Any] = {}
        self._host: list[Any] = []
        self._closed = False
        with self.activate():
            self._stream = drv.Stream()
        self.stream_handle = int(self._stream.handle)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self._ctx.push()
        try:
            yield
        finally:
            self._drv.Context.pop()

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype, mapped: bool) -> Allocation:
        drv = self._drv
        with self.activate():
            flags = drv.host_alloc_flags.DEVICEMAP if mapped else 0
            host = drv.pagelocked_empty(tuple(shape), np.dtype(dtype), mem_flags=flags)
            self._host.append(host)
            if mapped:
                return Allocation(host, int(host.base.get_device_pointer()), True, nbytes=host.nbytes)
            dev = drv.mem_alloc(max(1, host.nbytes))
        a = Allocation(host, int(dev), False, nbytes=host.nbytes)
        self._device[a.device_ptr] = dev
        return a

    def to_device(self, a: Allocation) -> None:
        if not a.mapped:
            with self.activate():
                self._drv.memcpy_htod_async(self._device[a.device_ptr], a.host, self._stream)

    def to_host(self, a: Allocation) -> None:
        if not a.mapped:
            with self.activate():
                self._drv.memcpy_dtoh_async(a.host, self._device[a.device_ptr], self._stream)

    def synchronize(self) -> None:
        with self.activate():
            self._stream.synchronize()

    def capture(self, work: Callable[[], None]) -> Any:
        raise CudaUnavailable("CUDA-graph capture needs cuda-python; pycuda cannot (use_cuda_graph=False)")

    def launch(self, graph: Any) -> None:
        raise CudaUnavailable("CUDA-graph launch needs cuda-python")

    def close(self) -> list[str]:
        """Free device and pinned memory and the stream inside the context, then release the context. A free
        that fails is logged and returned, and the rest still runs (the context must be released)."""
        if self._closed:
            return []
        self._closed = True
        failed = []
        with self.activate():
            for what, allocation in [*(("mem_free", d) for d in self._device.values()),
                                     *(("host free", h.base) for h in self._host)]:
                try:
                    allocation.free()
                except self._drv.Error as exc:
                    log.warning("pycuda %s failed: %s", what, exc)
                    failed.append(what)
            self._stream = None
        self._device, self._host = {}, []
        self._ctx.detach()
        return failed


def open_cuda(device_index: int = 0) -> Any:
    """cuda-python, else pycuda — also when cuda-python imports but cannot open the device (a CUDA 12
    binding on JetPack 5's CUDA 11.4); CudaUnavailable names every reason and both ways out."""
    attempts = []
    rt, drv = cudart_module(), pycuda_driver()
    if rt is not None:
        attempts.append(("cuda-python", lambda: CudaPythonMemory(device_index, rt)))
    if drv is not None:
        attempts.append(("pycuda", lambda: PyCudaMemory(device_index, drv)))
    return _first_that_works(attempts)
