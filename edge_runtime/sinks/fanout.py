"""Hands each frame, drop, event and status change to every sink, and keeps one sink's trouble its own.

Inline sinks (the event log, the counters, the status) run in the frame loop, in order, first; they only
queue or count. Every other sink (MQTT, Modbus, webhook, NG saver, window) gets its own thread and a bounded
queue: a slow one loses notifications (counted, reported), a failing one is reported, neither blocks the
loop nor stops the run, and the log line is already written.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional

#: where a sink reports what went wrong (an event-log line such as `sink_error`); one type for every sink
Report = Callable[[dict], None]
_STOP = object()


def sink_name(sink: Any) -> str:
    return str(getattr(sink, "name", type(sink).__name__))


class ErrorReporter:
    """Reports a sink's failures without flooding the log: the first of a run of failures, then every
    `every`th, then the recovery."""

    def __init__(self, name: str, report: Report, every: int = 100) -> None:
        self.name, self.report, self.every = name, report, every
        self.failed = self.in_row = 0

    def failure(self, error: str, frame_id: Optional[int] = None) -> None:
        self.failed += 1
        self.in_row += 1
        if self.in_row == 1 or self.in_row % self.every == 0:
            rec = {"event": "sink_error", "sink": self.name, "error": error, "failed": self.failed}
            if frame_id is not None:
                rec["id"] = frame_id
            self.report(rec)

    def success(self) -> None:
        if self.in_row:
            self.report({"event": "sink_recovered", "sink": self.name, "after_failures": self.in_row})
            self.in_row = 0


def _frame_id(arg: Any) -> Optional[int]:
    frame = getattr(arg, "frame", arg)
    return getattr(frame, "id", None)


class IsolatedSink:
    """A sink behind a bounded queue drained by its own daemon thread."""

    def __init__(self, sink: Any, report: Report, max_queue: int = 64) -> None:
        self.sink = sink
        self.name = sink_name(sink)
        self.wants_images = bool(getattr(sink, "wants_images", False))
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._errors = ErrorReporter(self.name, report)
        self._report = report
        self.skipped = 0
        self._thread = threading.Thread(target=self._loop, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> int:
        return self._errors.failed

    def submit(self, method: str, arg: Any) -> None:
        if not hasattr(self.sink, method):
            return
        try:
            self._q.put_nowait((method, arg))
        except queue.Full:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % 100 == 0:
                self._report({"event": "sink_error", "sink": self.name, "skipped": self.skipped,
                              "error": f"{self.skipped} notifications skipped: the sink is too slow"})

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                break
            method, arg = item
            try:
                getattr(self.sink, method)(arg)
                self._errors.success()
            except Exception as e:  # any failure is the sink's own: report it and serve the next item
                self._errors.failure(f"{method}: {type(e).__name__}: {e}", _frame_id(arg))
        close = getattr(self.sink, "close", None)
        if close is not None:
            try:
                close()
            except Exception as e:
                self._errors.failure(f"close: {type(e).__name__}: {e}")

    def close(self, timeout_s: float) -> None:
        """Let queued items go out for up to `timeout_s`, then leave the thread (a daemon) behind."""
        try:
            self._q.put(_STOP, timeout=timeout_s)
        except queue.Full:
            self._report({"event": "sink_error", "sink": self.name,
                          "error": f"still busy after {timeout_s:g} s at the end; {self._q.qsize()} items unsent"})
            return
        self._thread.join(timeout=timeout_s)


class Fanout:
    """The sinks of one run. Thread-safe: the watchdog thread reports through it too."""

    def __init__(self, sinks: list[Any], report: Optional[Report] = None, max_queue: int = 64) -> None:
        inline = [s for s in sinks if getattr(s, "inline", False)]
        writers = [s for s in inline if hasattr(s, "write")]
        self.report: Report = report or (writers[0].write if writers else (lambda rec: None))
        self.inline = inline
        self.isolated = [IsolatedSink(s, self.report, max_queue) for s in sinks if s not in inline]
        self._errors: dict[int, ErrorReporter] = {id(s): ErrorReporter(sink_name(s), self.report) for s in inline}
        self._lock = threading.RLock()
        for s in sinks:
            if hasattr(s, "attach"):
                s.attach(self)

    def _dispatch(self, method: str, arg: Any, light: Any = None) -> None:
        with self._lock:
            for s in self.inline:
                fn = getattr(s, method, None)
                if fn is None:
                    continue
                try:
                    fn(arg)
                except Exception as e:  # an inline sink must not stop the loop either
                    self._errors[id(s)].failure(f"{method}: {type(e).__name__}: {e}", _frame_id(arg))
            for w in self.isolated:
                w.submit(method, arg if light is None or w.wants_images else light)

    def on_frame(self, j: Any) -> None:
        self._dispatch("on_frame", j, j.light())

    def on_drop(self, d: Any) -> None:
        self._dispatch("on_drop", d)

    def on_event(self, ev: Any) -> None:
        self._dispatch("on_event", ev)

    def on_status(self, change: Any) -> None:
        self._dispatch("on_status", change)

    def sink_counts(self) -> dict:
        """Per isolated sink: notifications skipped (queue full) and calls that failed, for the end record."""
        return {w.name: {"skipped": w.skipped, "failed": w.failed} for w in self.isolated}

    def close(self, timeout_s: float = 5.0, skip: tuple = ()) -> None:
        """Close isolated sinks (each drains first) and inline ones with a `close`, except those in `skip`."""
        for w in self.isolated:
            w.close(timeout_s)
        for s in self.inline:
            if s not in skip and hasattr(s, "close"):
                try:
                    s.close()
                except Exception as e:
                    self._errors[id(s)].failure(f"close: {type(e).__name__}: {e}")
