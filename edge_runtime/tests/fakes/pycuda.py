"""A fake `pycuda.driver` with pycuda's context discipline (pycuda docs, "Devices and Contexts").

Contexts live on a per-thread stack: `Context.push()` / the static `Context.pop()`; every driver call needs a
current context. At interpreter exit pycuda aborts the process when the stack is not empty ("PyCUDA ERROR:
The context stack was not empty upon module cleanup ... The program will be aborted now.") —
`assert_clean_exit` is that check. `Device.retain_primary_context()` returns the device's primary context,
released by `detach()`. Page-locked arrays keep their `HostAllocation` in `.base` (`get_device_pointer()`
for DEVICEMAP memory, `free()`); `mem_alloc` returns a `DeviceAllocation` (int() is the address, `free()`).
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

from .gpu import FakeGpu


class Error(Exception):
    pass


class LogicError(Error):
    pass


def make_pycuda(gpu: FakeGpu, driver_ok: bool = True) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")
    stack: list = []
    state = {"initialised": False, "retained": 0}

    def need_context(what: str) -> None:
        if not state["initialised"]:
            raise LogicError(f"{what} failed: cuInit was not called")
        if not stack:
            raise LogicError(f"{what} failed: invalid device context")

    def init():
        if not driver_ok:
            raise Error("cuInit failed: system has unsupported display driver / cuda driver combination")
        state["initialised"] = True

    class Context:
        def __init__(self):
            self.detached = False

        def push(self):
            if self.detached:
                raise LogicError("cuCtxPushCurrent failed: context was detached")
            stack.append(self)

        @staticmethod
        def pop():
            if not stack:
                raise LogicError("cuCtxPopCurrent failed: context stack is empty")
            stack.pop()

        def detach(self):
            self.detached = True
            state["retained"] -= 1

    class device_attribute:  # noqa: N801
        INTEGRATED = "INTEGRATED"
        MULTIPROCESSOR_COUNT = "MULTIPROCESSOR_COUNT"

    class Device:
        def __init__(self, index):
            if not state["initialised"]:
                raise LogicError("cuDeviceGet failed: not initialized")
            if index != 0:
                raise Error(f"cuDeviceGet failed: invalid device ordinal {index}")

        def name(self):
            return gpu.name

        def compute_capability(self):
            return gpu.compute_capability

        def total_memory(self):
            return gpu.total_memory

        def get_attribute(self, attr):
            return {"INTEGRATED": int(gpu.integrated), "MULTIPROCESSOR_COUNT": gpu.sm_count}[attr]

        def retain_primary_context(self):
            state["retained"] += 1
            return Context()

    class Stream:
        def __init__(self):
            need_context("cuStreamCreate")
            self.handle = gpu.create_stream()

        def synchronize(self):
            need_context("cuStreamSynchronize")

        def __del__(self):
            with contextlib.suppress(Exception):   # already destroyed
                gpu.destroy_stream(self.handle)

    class host_alloc_flags:  # noqa: N801
        DEVICEMAP = 2

    class HostAllocation(bytearray):
        def get_device_pointer(self):
            return self.address

        def free(self):
            gpu.free(self.address, ("host", "mapped"))

    class DeviceAllocation:
        def __init__(self, nbytes):
            self.address = gpu.alloc("device", nbytes)

        def __int__(self):
            return self.address

        def free(self):
            need_context("cuMemFree")
            gpu.free(self.address, ("device",))

    def pagelocked_empty(shape, dtype, mem_flags=0):
        need_context("cuMemHostAlloc")
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        host = HostAllocation(nbytes)
        host.address = gpu.adopt("mapped" if mem_flags & host_alloc_flags.DEVICEMAP else "host", host)
        return np.ndarray(shape, dtype, buffer=host)

    def mem_alloc(nbytes):
        need_context("cuMemAlloc")
        return DeviceAllocation(nbytes)

    def memcpy_htod_async(dest, src, stream):
        need_context("cuMemcpyHtoDAsync")
        src = np.ascontiguousarray(src)
        gpu.enqueue(stream.handle, lambda: gpu.memmove(int(dest), src.ctypes.data, src.nbytes))

    def memcpy_dtoh_async(dest, src, stream):
        need_context("cuMemcpyDtoHAsync")
        gpu.enqueue(stream.handle, lambda: gpu.memmove(dest.ctypes.data, int(src), dest.nbytes))

    def assert_clean_exit():
        if stack:
            raise AssertionError("PyCUDA ERROR: The context stack was not empty upon module cleanup. "
                                 "The program will be aborted now.")

    drv.Error, drv.LogicError = Error, LogicError
    drv.init, drv.Context, drv.Device, drv.Stream = init, Context, Device, Stream
    drv.device_attribute, drv.host_alloc_flags = device_attribute, host_alloc_flags
    drv.pagelocked_empty, drv.mem_alloc = pagelocked_empty, mem_alloc
    drv.memcpy_htod_async, drv.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    drv.assert_clean_exit, drv.context_stack, drv.state = assert_clean_exit, stack, state
    return drv
