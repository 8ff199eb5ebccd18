"""What the frame loop pulls from: a stream of items, read in the caller's thread (files) or in a capture thread
where the newest frame wins and the frame it replaces becomes a `Dropped` item (live sources)."""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Iterator, Optional

from edge_runtime.sources.items import Dropped, Frame, Item

# ---------------------------------------------------------------- streams

END = object()
SUPERSEDED = "superseded by a newer frame: the pipeline is slower than the source"
STOPPED = "the run stopped before this frame was judged"


class LatestFrameBuffer:
    """One frame slot where the newest wins; the frame it replaces becomes a `Dropped` event."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._events: collections.deque[Item] = collections.deque()
        self._done = False

    def put(self, item: Item) -> None:
        with self._cond:
            if isinstance(item, Frame):
                if self._frame is not None:
                    old = self._frame
                    self._events.append(Dropped(old.id, old.captured, SUPERSEDED, old.origin))
                self._frame = item
            else:
                self._events.append(item)
            self._cond.notify()

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def get(self, timeout: float) -> Any:
        """The next event, else the newest frame; `END` once finished and empty; None on timeout."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._events or self._frame is not None or self._done, timeout
            ):
                return None
            if self._events:
                return self._events.popleft()
            if self._frame is not None:
                frame, self._frame = self._frame, None
                return frame
            return END

    def drain(self, reason: str) -> list[Item]:
        with self._cond:
            out = list(self._events)
            self._events.clear()
            if self._frame is not None:
                f, self._frame = self._frame, None
                out.append(Dropped(f.id, f.captured, reason, f.origin, f.part))
            return out


class FrameStream:
    """What the pipeline pulls from; live streams read in a thread (newest wins), files in the caller's."""

    def __init__(
        self,
        name: str,
        produce: Callable[[threading.Event], Iterator[Item]],
        threaded: bool,
        describe: str = "",
        frame_period_s: Optional[float] = None,
    ) -> None:
        self.name = name
        self.describe = describe or name
        self.frame_period_s = frame_period_s  # the source's frame interval, for the watchdog; None: unpaced
        self._produce = produce
        self.threaded = threaded
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._buffer: LatestFrameBuffer | None = None
        self._error: BaseException | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def __iter__(self) -> Iterator[Item]:
        if not self.threaded:
            yield from self._produce(self.stop_event)
            return
        self._buffer = LatestFrameBuffer()
        self._thread = threading.Thread(
            target=self._capture, args=(self._buffer,), name=f"capture-{self.name}", daemon=True
        )
        self._thread.start()
        while True:
            item = self._buffer.get(timeout=0.1)
            if item is END:
                break
            if item is None:
                if self.stop_event.is_set():
                    break
                continue
            yield item
        if self._error is not None:
            raise self._error

    def _capture(self, buffer: LatestFrameBuffer) -> None:
        try:
            for item in self._produce(self.stop_event):
                buffer.put(item)
        except BaseException as e:  # handed to the consumer thread, which re-raises it
            self._error = e
        finally:
            buffer.finish()

    def close(self) -> list[Item]:
        """Stop reading; frames captured but never handed over come back, to be logged as dropped."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        return self._buffer.drain(STOPPED) if self._buffer is not None else []
