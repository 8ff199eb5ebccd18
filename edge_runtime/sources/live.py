"""A live source read until stopped, reopened with back-off when it fails, in a capture thread where the newest
frame wins."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from edge_runtime.sources.cameras import describe_capture
from edge_runtime.sources.capture import CaptureLike, Opener, read_frame, release, try_open
from edge_runtime.sources.items import Frame, FrameIds, Item, SourceEvent
from edge_runtime.sources.stream import FrameStream


@dataclass
class ReconnectPolicy:
    """Exponential back-off between attempts to reopen a live source; gives up after `max_attempts`."""

    max_attempts: int = 10
    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.initial_delay_s * self.factor ** max(attempt - 1, 0))



# ---------------------------------------------------------------- live sources


def live_items(opener: Opener, name: str, policy: ReconnectPolicy, stop: threading.Event) -> Iterator[Item]:
    """Read a live source until stopped; on failure reopen it with back-off, and give up after the bound.

    The attempt counter resets only after a good frame, so a source that opens but never delivers still
    ends after `max_attempts`.
    """
    ids, cap, failures, ever_opened = FrameIds(), None, 0, False
    try:
        while not stop.is_set():
            if cap is None:
                if failures:
                    if failures > policy.max_attempts:
                        yield SourceEvent(
                            "gave_up",
                            f"{name}: no frame after {policy.max_attempts} attempts to "
                            "reconnect; check the cable, power and address",
                            time.time(),
                        )
                        return
                    delay = policy.delay(failures)
                    yield SourceEvent(
                        "reconnecting",
                        f"{name}: attempt {failures}/{policy.max_attempts} in {delay:.2f} s",
                        time.time(),
                    )
                    if stop.wait(delay):
                        return
                cap = try_open(opener)
                if cap is None:
                    failures += 1
                    continue
                yield SourceEvent("reconnected" if ever_opened else "opened", _opened_detail(name, cap), time.time())
                ever_opened = True
            image, read_ms, err = read_frame(cap)
            if image is None:
                failures += 1
                yield SourceEvent("read_failed", f"{name}: {err}", time.time())
                release(cap)
                cap = None
                continue
            failures = 0
            yield Frame(ids.take(), time.time(), image, name, read_ms, time.perf_counter())
    finally:
        release(cap)


def _opened_detail(name: str, cap: CaptureLike) -> str:
    try:
        return f"{name}: {cap.describe() if hasattr(cap, 'describe') else describe_capture(cap)}"
    except Exception:  # a fake or odd capture without properties
        return name



#: Frame rate assumed for a live camera that was not told one (the watchdog's period).
DEFAULT_LIVE_FPS = 30.0


def live_stream(
    opener: Opener, name: str, policy: ReconnectPolicy, describe: str = "", fps: Optional[float] = None,
    paced: bool = True,
) -> FrameStream:
    """`paced` False: frames come when something outside asks (a hardware trigger), so a quiet camera is no stall."""
    return FrameStream(
        name, lambda stop: live_items(opener, name, policy, stop), threaded=True, describe=describe,
        frame_period_s=1.0 / (fps or DEFAULT_LIVE_FPS) if paced else None,
    )
