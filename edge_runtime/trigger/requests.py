"""What a trigger says — inspect this part now — and the triggers that say it."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Protocol, TextIO


@dataclass(frozen=True)
class PartRequest:
    """One part to inspect: its ID (the PLC's part number, a serial, or the trigger's sequence number) and when the
    trigger came (`at`: time.perf_counter(), the clock the deadline runs on)."""

    part: str
    seq: int
    at: float


class Trigger(Protocol):
    """A source of part requests; `requests` ends when the trigger does (or `stop` is set)."""

    name: str

    def requests(self, stop: threading.Event) -> Iterator[PartRequest]: ...


class QueueTrigger:
    """Parts asked for by a program (or a test): `fire(part)` from any thread; `close()` ends the run."""

    _END = object()

    def __init__(self, name: str = "software") -> None:
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._seq = 0
        self._lock = threading.Lock()

    def fire(self, part: Optional[str] = None) -> PartRequest:
        """Ask for one part now; without an ID it is named by its sequence number."""
        with self._lock:
            self._seq += 1
            request = PartRequest(part if part is not None else str(self._seq), self._seq, time.perf_counter())
        self._queue.put(request)
        return request

    def close(self) -> None:
        self._queue.put(self._END)

    def requests(self, stop: threading.Event) -> Iterator[PartRequest]:
        while not stop.is_set():
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is self._END:
                return
            yield item


class LineTrigger:
    """One part per line of text (stdin, a pipe, a FIFO a line controller writes to): the line is the part ID; an
    empty line asks for a part named by its sequence number. The end of the text ends the run."""

    def __init__(self, lines: TextIO, name: str = "stdin") -> None:
        self._lines = lines
        self.name = name

    def requests(self, stop: threading.Event) -> Iterator[PartRequest]:
        for seq, line in enumerate(self._lines, start=1):
            if stop.is_set():
                return
            part = line.strip() or str(seq)
            yield PartRequest(part, seq, time.perf_counter())
