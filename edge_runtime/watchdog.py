"""The watchdog: a `stalled` event when no frame arrives within k frame periods, `resumed` when one does.

It runs in its own thread because a stalled camera blocks the thread that reads it (OpenCV's V4L2 and
GStreamer reads can block for 10–30 s or for ever). The limit follows the source: k periods of the camera's
frame rate (never under `min_s`), or `unpaced_s` for files and folders read as fast as they decode. A frame
that arrives and is dropped (superseded) still counts: the camera is alive.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from edge_runtime.sources.items import SourceEvent


@dataclass
class WatchdogConfig:
    periods: float = 10.0  # k: frame periods without a frame before the run is stalled
    min_s: float = 1.0  # the limit is never tighter than this (start-up jitter, a slow first inference)
    unpaced_s: float = 30.0  # sources without a frame rate (files read flat out, image folders)

    def limit_s(self, frame_period_s: Optional[float]) -> float:
        if not frame_period_s:
            return self.unpaced_s
        return max(self.min_s, self.periods * frame_period_s)


class Watchdog:
    """`seen()` from the frame loop on every frame; the thread reports `stalled` to the sinks once per stall."""

    def __init__(self, limit_s: float, explain: str = "") -> None:
        if limit_s <= 0:
            raise ValueError(f"watchdog limit must be > 0 s, got {limit_s}")
        self.limit_s = limit_s
        self.explain = explain
        self.stalls = 0
        self._last = time.monotonic()
        self._stalled = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fan: Any = None
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def for_stream(cls, stream: Any, cfg: WatchdogConfig) -> Watchdog:
        period = getattr(stream, "frame_period_s", None)
        limit = cfg.limit_s(period)
        explain = (f"{cfg.periods:g} × {period * 1e3:.1f} ms frame period" if period
                   else "source without a frame rate")
        return cls(limit, explain)

    def start(self, fan: Any) -> None:
        self._fan = fan
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self._thread.start()

    def seen(self) -> None:
        with self._lock:
            gap = time.monotonic() - self._last
            self._last = time.monotonic()
            was, self._stalled = self._stalled, False
        if was and self._fan is not None:
            self._fan.on_event(SourceEvent("resumed", f"a frame arrived after {gap:.2f} s", time.time()))

    def _loop(self) -> None:
        tick = min(max(self.limit_s / 4, 0.005), 0.5)
        while not self._stop.wait(tick):
            with self._lock:
                gap = time.monotonic() - self._last
                fire = gap > self.limit_s and not self._stalled
                if fire:
                    self._stalled = True
                    self.stalls += 1
            if fire and self._fan is not None:
                self._fan.on_event(SourceEvent(
                    "stalled", f"no frame for {gap:.2f} s (limit {self.limit_s:.2f} s: {self.explain})", time.time()
                ))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
