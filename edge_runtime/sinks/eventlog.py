"""The event log: one strict-JSON line per frame and per event, durable, bounded, honest about losses.

`write` only queues the line (the frame loop never waits on the disk); a flusher thread writes what is
queued every 100 ms and fsyncs every few seconds, so a stalled stream still reaches the disk. The file rotates
by size (`events.jsonl` → `events.jsonl.1` … `.N`, oldest deleted). A write that fails (full disk) costs the
lines it carried: they are counted, the file is cut back to its last complete line, and the end record says
how many were `lost`. Every record carries the run's `run_id`, because frame ids restart with each run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from edge_runtime.errors import SlsgError
from edge_runtime.records import drop_record, frame_record, json_line, source_record

Opener = Callable[[Path], BinaryIO]


class EventLogError(SlsgError, RuntimeError):
    """The log file cannot be created or opened at all: the run must not start without its log."""


def new_run_id() -> str:
    """Sortable and unique enough: UTC start time plus 6 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def open_append(path: Path) -> BinaryIO:
    """Unbuffered append: a write either lands in the kernel or raises, and says how much it wrote."""
    return open(path, "ab", buffering=0)  # noqa: SIM115 — the log owns it


@dataclass
class LogPolicy:
    flush_interval_s: float = 0.1
    fsync_interval_s: float = 2.0
    max_bytes: int = 100 * 1024 * 1024  # rotate beyond this; 0 = never
    keep: int = 10  # rotated files kept beside the live one


class EventLog:
    """Thread-safe JSONL writer with a background flusher; `close(final)` writes the end record last."""

    inline = True  # the pipeline writes it first, in the frame loop's thread (it only queues)

    def __init__(
        self,
        path: Path,
        flush_interval_s: float | None = None,
        run_id: str | None = None,
        policy: LogPolicy | None = None,
        opener: Opener = open_append,
    ) -> None:
        self.path = Path(path)
        self.policy = policy or LogPolicy()
        if flush_interval_s is not None:
            self.policy.flush_interval_s = flush_interval_s
        self.run_id = run_id or new_run_id()
        self._opener = opener
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: Optional[BinaryIO] = opener(self.path)
            self._size = self.path.stat().st_size if self.path.exists() else 0
        except OSError as e:
            raise EventLogError(
                f"cannot create the event log {self.path}: {e.strerror or e}; choose another --log "
                "or make its folder writable"
            ) from None
        self._pending: list[bytes] = []
        self._lock = threading.Lock()  # guards _pending
        self._io = threading.Lock()  # guards the file
        self._last_fsync = time.monotonic()
        self._unsynced = 0
        self._failing = False
        self._closed = False
        self.lines = 0  # lines that reached the file
        self.lost = 0  # lines a failed write cost
        self.rotations = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name="event-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ queueing

    def write(self, record: dict) -> None:
        line = (json_line({"run_id": self.run_id, **record}) + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                self.lost += 1
                return
            self._pending.append(line)
        if self.policy.flush_interval_s <= 0:
            self.flush()

    def on_frame(self, j) -> None:
        self.write(frame_record(j))

    def on_drop(self, d) -> None:
        self.write(drop_record(d))

    def on_event(self, ev) -> None:
        self.write(source_record(ev))

    def on_status(self, change) -> None:
        self.write(change.record())

    # ------------------------------------------------------------------ writing

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.policy.flush_interval_s or 0.1):
            self.flush()

    def flush(self, fsync: bool = False) -> None:
        """Write everything queued; fsync when asked or when the interval has passed."""
        with self._io:
            with self._lock:
                lines, self._pending = self._pending, []
            if lines and self._f is None:
                self._reopen()
            if lines:
                if self._f is None:
                    self._lose(lines, 0, OSError("the log file is not open"))
                else:
                    self._write(lines)
            due = time.monotonic() - self._last_fsync >= self.policy.fsync_interval_s
            if self._unsynced and (fsync or due):
                self._fsync()

    def _write(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        if self.policy.max_bytes and self._size > 0 and self._size + len(data) > self.policy.max_bytes:
            self._rotate()
            if self._f is None:
                self._lose(lines, 0, OSError("the log could not be reopened after rotation"))
                return
        done = 0
        try:
            while done < len(data):
                n = self._f.write(data[done:])
                if not n:
                    raise OSError("the file accepted no bytes")
                done += n
        except OSError as e:
            self._lose(lines, done, e)
            return
        self._size += len(data)
        self._unsynced += len(data)
        self.lines += len(lines)
        if self._failing:
            self._failing = False
            print(f"slsg-edge: the event log {self.path} is writable again ({self.lost} lines lost)",
                  file=sys.stderr)

    def _lose(self, lines: list[bytes], written: int, e: OSError) -> None:
        """Keep the complete lines that made it, cut a partial one off, count the rest as lost."""
        kept = kept_bytes = 0
        for line in lines:
            if kept_bytes + len(line) > written:
                break
            kept += 1
            kept_bytes += len(line)
        if written > kept_bytes and self._f is not None:
            with contextlib.suppress(OSError, AttributeError):
                self._f.truncate(self._size + kept_bytes)  # no half line: every line stays valid JSON
        self._size += kept_bytes
        self.lines += kept
        self.lost += len(lines) - kept
        if not self._failing:
            self._failing = True
            print(f"slsg-edge: cannot write the event log {self.path} ({e}); the run continues and counts "
                  "the lines lost", file=sys.stderr)

    def _fsync(self) -> None:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            os.fsync(self._f.fileno())
        self._unsynced = 0
        self._last_fsync = time.monotonic()

    def _rotate(self) -> None:
        """events.jsonl → .1, .1 → .2, …; the oldest beyond `keep` is deleted. A failure keeps the live file."""
        self._fsync()
        with contextlib.suppress(OSError):
            self._f.close()
        self._f = None
        try:
            keep = max(self.policy.keep, 0)
            oldest = self._rotated(keep)
            if keep == 0 or oldest.exists():
                (self.path if keep == 0 else oldest).unlink(missing_ok=True)
            for i in range(keep - 1, 0, -1):
                if self._rotated(i).exists():
                    os.replace(self._rotated(i), self._rotated(i + 1))
            if keep and self.path.exists():
                os.replace(self.path, self._rotated(1))
            self.rotations += 1
        except OSError as e:
            print(f"slsg-edge: cannot rotate the event log {self.path} ({e}); writing on", file=sys.stderr)
        self._reopen()

    def _reopen(self) -> None:
        try:
            self._f = self._opener(self.path)
            self._size = self.path.stat().st_size if self.path.exists() else 0
        except OSError as e:
            self._f = None
            if not self._failing:
                print(f"slsg-edge: cannot reopen the event log {self.path} ({e})", file=sys.stderr)

    def _rotated(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    # ------------------------------------------------------------------ closing

    def close(self, final: dict | None = None) -> None:
        """Flush, then write `final` (the end record) with the `lost` count, fsync and close."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.flush()
        if final is not None:
            with self._lock:
                lost = self.lost
            self.write({**final, "log_lines": self.lines, "lost": lost})
            self.flush()
        with self._lock:
            self._closed = True
        with self._io:
            if self._f is not None:
                self._fsync()
                with contextlib.suppress(OSError):
                    self._f.close()
                self._f = None
