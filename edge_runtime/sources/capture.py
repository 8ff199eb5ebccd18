"""One capture device as OpenCV opens it (or a test fakes it): open, read a frame, release — none of which may
raise into the frame loop."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Protocol

import cv2


class CaptureLike(Protocol):
    """What OpenCV's VideoCapture offers and tests can fake."""

    def isOpened(self) -> bool: ...  # noqa: N802 — OpenCV's spelling
    def read(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...
    def get(self, prop: int) -> float: ...


Opener = Callable[[], "CaptureLike"]



def read_frame(cap: CaptureLike) -> tuple[Any, float, str]:
    """(image or None, read time in ms, error text)."""
    t0 = time.perf_counter()
    try:
        ok, image = cap.read()
        err = "" if ok and image is not None else "the source returned no frame"
    except (cv2.error, OSError, RuntimeError) as e:
        ok, image, err = False, None, f"read raised {type(e).__name__}: {e}"
    return (image if ok else None), (time.perf_counter() - t0) * 1e3, err


def release(cap: CaptureLike | None) -> None:
    if cap is not None:
        with contextlib.suppress(cv2.error, OSError, RuntimeError):
            cap.release()



def try_open(opener: Opener) -> CaptureLike | None:
    try:
        cap = opener()
    except (cv2.error, OSError, RuntimeError):
        return None
    if cap is None or not cap.isOpened():
        release(cap)
        return None
    return cap
