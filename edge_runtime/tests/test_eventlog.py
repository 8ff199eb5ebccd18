"""The event log is durable and honest: timed flushes, rotation with retention, counted losses, run ids."""

from __future__ import annotations

import errno
import io
import json
import time
from pathlib import Path

import pytest

from edge_runtime.sinks.eventlog import EventLog, EventLogError, LogPolicy


class FillingDisk(io.RawIOBase):
    """A real file whose disk 'fills' after `room` bytes (writes what fits, then ENOSPC) until `free()`."""

    def __init__(self, path: Path, room: int) -> None:
        self._f = open(path, "ab", buffering=0)  # noqa: SIM115
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        b = bytes(b)
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self._f.write(b[: self.room])
        self.room -= n
        return n

    def truncate(self, size=None) -> int:
        return self._f.truncate(size)

    def fileno(self) -> int:
        return self._f.fileno()

    def free(self) -> None:
        self.room = 10**12

    def close(self) -> None:
        self._f.close()
        super().close()


def _lines(path: Path) -> list:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_full_disk_costs_counted_lines_and_never_a_half_line(tmp_path: Path) -> None:
    disks: list = []

    def opener(path: Path) -> FillingDisk:
        disks.append(FillingDisk(path, room=1000))
        return disks[-1]

    log = EventLog(tmp_path / "e.jsonl", run_id="r", opener=opener, policy=LogPolicy(flush_interval_s=60))
    for i in range(100):  # one flush: what fits in 1000 bytes stays, the rest is lost
        log.write({"event": "frame", "id": i})
    log.flush()
    assert 0 < log.lines < 100 and log.lines + log.lost == 100
    disks[-1].free()
    for i in range(100, 110):
        log.write({"event": "frame", "id": i})
    log.close({"event": "end"})
    recs = _lines(tmp_path / "e.jsonl")  # every line parses: the partial line was cut off
    ids = [r["id"] for r in recs if r["event"] == "frame"]
    assert ids == list(range(len(ids) - 10)) + list(range(100, 110))
    assert recs[-1]["event"] == "end" and recs[-1]["lost"] == 100 - (len(ids) - 10)


def test_rotation_keeps_the_retention_count(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    log = EventLog(path, run_id="r", policy=LogPolicy(flush_interval_s=60, max_bytes=2000, keep=3))
    for i in range(400):
        log.write({"event": "frame", "id": i, "pad": "x" * 20})
        if i % 10 == 9:
            log.flush()
    log.close({"event": "end"})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["e.jsonl", "e.jsonl.1", "e.jsonl.2", "e.jsonl.3"] and log.rotations > 3
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    ids = [r["id"] for name in ("e.jsonl.3", "e.jsonl.2", "e.jsonl.1", "e.jsonl")
           for r in _lines(tmp_path / name) if r["event"] == "frame"]
    assert ids == list(range(ids[0], 400))  # the newest, in order, none lost; the oldest rotated away
    assert _lines(path)[-1]["lost"] == 0


def test_lines_reach_the_disk_within_the_flush_interval_without_another_write(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.jsonl", policy=LogPolicy(flush_interval_s=0.1))
    log.write({"event": "source", "kind": "stalled"})  # a stalled stream writes nothing after this
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not (tmp_path / "e.jsonl").read_text():
        time.sleep(0.02)
    waited = 2.0 - (deadline - time.monotonic())
    log.close()
    assert _lines(tmp_path / "e.jsonl")[0]["kind"] == "stalled" and waited < 1.0


def test_every_record_carries_the_run_id_and_appends_across_runs(tmp_path: Path) -> None:
    for run in ("a", "b"):
        log = EventLog(tmp_path / "e.jsonl", run_id=run)
        log.write({"event": "frame", "id": 0})
        log.close({"event": "end"})
    recs = _lines(tmp_path / "e.jsonl")
    assert [(r["run_id"], r["event"], r.get("id")) for r in recs] == [
        ("a", "frame", 0), ("a", "end", None), ("b", "frame", 0), ("b", "end", None)]


def test_a_log_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(EventLogError, match="cannot create the event log .*--log"):
        EventLog(tmp_path / "file" / "events.jsonl")
