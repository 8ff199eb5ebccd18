"""One fake GPU shared by the fake CUDA bindings and the fake TensorRT.

Device and pinned memory are real host memory (ctypes buffers), so a device pointer is an address numpy and
ctypes can read; streams run work at once unless a capture is open (then the work is recorded into the
graph, as CUDA stream capture does: CUDA Runtime API, "Stream Management", cudaStreamBeginCapture). Every
allocation, stream and graph is tracked so a test can assert that everything was released.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class FakeCudaError(RuntimeError):
    """A misuse the real driver would reject (bad pointer, double free, capture-illegal call)."""


@dataclass
class Stream:
    handle: int
    capture: list | None = None       # work recorded while capturing
    invalidated: bool = False         # a capture-illegal call happened during the capture


@dataclass
class FakeGpu:
    name: str = "Orin (nvgpu)"
    compute_capability: tuple[int, int] = (8, 7)
    integrated: bool = True
    total_memory: int = 30 << 30
    sm_count: int = 16
    dla_cores: int = 2
    free_memory: int | None = None                     # bytes TensorRT can still allocate; None: plenty
    calls: list = field(default_factory=list)          # (what, details) in the order they happened
    _memory: dict = field(default_factory=dict)        # address → (kind, ctypes buffer)
    _streams: dict = field(default_factory=dict)
    _graphs: dict = field(default_factory=dict)        # handle → list of work
    _next_handle: int = 0x1000

    # ---- bookkeeping
    def record(self, what: str, *details) -> None:
        self.calls.append((what, *details))

    def names(self, prefix: str = "") -> list[str]:
        return [c[0] for c in self.calls if c[0].startswith(prefix)]

    def handle(self) -> int:
        self._next_handle += 16
        return self._next_handle

    # ---- memory
    def alloc(self, kind: str, nbytes: int) -> int:
        buf = (ctypes.c_uint8 * max(1, int(nbytes)))()
        addr = ctypes.addressof(buf)
        self._memory[addr] = (kind, buf)
        self.record(f"alloc-{kind}", nbytes)
        return addr

    def adopt(self, kind: str, buf) -> int:
        """Track memory owned by the caller (a pycuda page-locked bytearray)."""
        addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
        self._memory[addr] = (kind, buf)
        self.record(f"alloc-{kind}", len(buf))
        return addr

    def free(self, addr: int, kinds: tuple[str, ...]) -> None:
        entry = self._memory.get(int(addr))
        if entry is None or entry[0] not in kinds:
            raise FakeCudaError(f"free of {hex(int(addr))}: not a live {'/'.join(kinds)} allocation")
        del self._memory[int(addr)]
        self.record(f"free-{entry[0]}")

    def size_at(self, addr: int) -> int:
        """Bytes from `addr` to the end of the live allocation holding it (0 when none does)."""
        for start, (_, buf) in self._memory.items():
            size = len(buf) if isinstance(buf, bytearray) else ctypes.sizeof(buf)
            if start <= addr < start + size:
                return start + size - addr
        return 0

    def view(self, addr: int, nbytes: int) -> np.ndarray:
        if self.size_at(addr) < nbytes:
            raise FakeCudaError(f"access of {nbytes} bytes at {hex(addr)} outside any live allocation")
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(addr))

    def memmove(self, dst: int, src: int, nbytes: int) -> None:
        self.view(dst, nbytes)
        self.view(src, nbytes)
        ctypes.memmove(dst, src, nbytes)

    # ---- streams and graphs
    def create_stream(self) -> int:
        h = self.handle()
        self._streams[h] = Stream(h)
        self.record("stream-create")
        return h

    def destroy_stream(self, handle: int) -> None:
        if self._streams.pop(int(handle), None) is None:
            raise FakeCudaError(f"destroy of unknown stream {handle}")
        self.record("stream-destroy")

    def stream(self, handle: int) -> Stream:
        s = self._streams.get(int(handle))
        if s is None:
            raise FakeCudaError(f"unknown or destroyed stream {handle}")
        return s

    def enqueue(self, handle: int, work: Callable[[], None]) -> None:
        s = self.stream(handle)
        if s.capture is not None:
            s.capture.append(work)
        else:
            work()

    def capturing(self, handle: int) -> bool:
        return self.stream(handle).capture is not None

    def begin_capture(self, handle: int) -> None:
        s = self.stream(handle)
        if s.capture is not None:
            raise FakeCudaError("begin of a capture on a stream already capturing")
        s.capture, s.invalidated = [], False

    def invalidate_capture(self, handle: int) -> None:
        self.stream(handle).invalidated = True

    def end_capture(self, handle: int) -> int | None:
        """The captured graph, or None when the capture was invalidated; the stream leaves capture mode."""
        s = self.stream(handle)
        if s.capture is None:
            raise FakeCudaError("end of a capture that was never begun")
        work, s.capture = s.capture, None
        if s.invalidated:
            s.invalidated = False
            return None
        g = self.handle()
        self._graphs[g] = work
        return g

    def instantiate(self, graph: int) -> int:
        if graph not in self._graphs:
            raise FakeCudaError(f"instantiate of unknown graph {graph}")
        exe = self.handle()
        self._graphs[exe] = list(self._graphs[graph])
        return exe

    def launch(self, exe: int, handle: int) -> None:
        if not isinstance(exe, int) or exe not in self._graphs:
            raise FakeCudaError(f"cudaGraphLaunch of {exe!r}: not an instantiated graph")
        self.record("graph-launch")
        for work in self._graphs[exe]:
            self.enqueue(handle, work)

    def destroy_graph(self, handle: int) -> None:
        if self._graphs.pop(int(handle), None) is None:
            raise FakeCudaError(f"destroy of unknown graph {handle}")

    def live(self) -> list[str]:
        """What is still allocated: empty after a clean shutdown."""
        return ([f"{kind} memory" for kind, _ in self._memory.values()] + ["stream"] * len(self._streams)
                + ["graph"] * len(self._graphs))
