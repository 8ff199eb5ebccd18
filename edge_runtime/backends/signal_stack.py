"""Keep the calling thread's alternate signal stack across a call into a library that swaps it.

OpenVINO's CPU plugin (measured on 2026.4) registers a stack of its own as the calling thread's alternate
signal stack in `compile_model`, and puts back the one it found when that compiled model is released. Two
models released first-in-first-out leave the first model's freed stack registered. Python installs every
signal handler with SA_ONSTACK (SIGINT, the runtime's SIGTERM, torch's SIGCHLD), so the next such signal
kills the process with SIGSEGV: a line PC that probes backends, then stops on SIGTERM, would die instead of
closing its outputs. Restoring the stack right after the call means the library's stack is never the one
registered, and its own restore on release then puts back ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator


class _StackT(ctypes.Structure):
    """`stack_t` of Linux on x86-64 and aarch64 (Jetson): pointer, int flags, size."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


_LIBC = _libc()
_SS_ONSTACK = 1


def current_signal_stack() -> tuple[int, int, int] | None:
    """(address, flags, size) of this thread's alternate signal stack; None off Linux."""
    if _LIBC is None:
        return None
    stack = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return (stack.ss_sp or 0, stack.ss_flags, stack.ss_size)


@contextlib.contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Run the block, then put this thread's alternate signal stack back to what it was before."""
    if _LIBC is None:
        yield
        return
    saved = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        if not saved.ss_flags & _SS_ONSTACK:  # only inside a handler; never swap a stack that is in use
            _LIBC.sigaltstack(ctypes.byref(saved), None)
