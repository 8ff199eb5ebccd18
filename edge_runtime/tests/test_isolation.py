"""A failing sink and a slow sink leave every frame in the log and never hold the frame loop up."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import Judge, run_pipeline
from edge_runtime.sinks.eventlog import EventLog
from edge_runtime.sinks.fanout import ErrorReporter, Fanout
from edge_runtime.sources.spec import SourceSpec, open_source
from edge_runtime.tests.conftest import write_video


class Failing:
    name = "failing"

    def __init__(self, every: int = 1) -> None:
        self.every, self.calls = every, 0

    def on_frame(self, j) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            raise ConnectionError("server said no")


class Slow:
    name = "slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s, self.seen, self.closed = delay_s, [], False

    def on_frame(self, j) -> None:
        time.sleep(self.delay_s)
        self.seen.append(j.frame.id)
        assert j.frame.image is None and j.image is None  # record-only sinks get no pixels

    def close(self) -> None:
        self.closed = True


class InlineBroken:
    inline = True
    name = "inline-broken"

    def on_frame(self, j) -> None:
        raise ValueError("a bug in an inline sink")


def test_failing_and_slow_sinks_leave_every_frame_in_the_log(bundle_dir: Path, tmp_path: Path) -> None:
    n = 40
    b = load_bundle(bundle_dir)
    judge = Judge(select_backend(b, "onnx", threads=1), b.threshold.value)
    stream = open_source(SourceSpec(video=write_video(tmp_path / "v.avi", [30, 220] * (n // 2))))
    log = EventLog(tmp_path / "e.jsonl")
    slow, failing = Slow(0.2), Failing()
    fan = Fanout([log, failing, slow, InlineBroken()], max_queue=4)
    t0 = time.perf_counter()
    result = run_pipeline(stream, judge, fan)
    loop_s = time.perf_counter() - t0
    fan.close(timeout_s=0.5, skip=(log,))
    log.close({"event": "end"})
    recs = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    frames = [r["id"] for r in recs if r["event"] == "frame"]
    assert frames == list(range(n)) and result.judged == n
    assert loop_s < n * 0.2 / 4  # the slow sink alone would need 8 s; the loop did not wait for it
    errors = [r for r in recs if r["event"] == "sink_error"]
    assert any(r["sink"] == "failing" and "ConnectionError" in r["error"] for r in errors)
    assert any(r["sink"] == "inline-broken" for r in errors)
    assert any(r["sink"] == "slow" and "skipped" in r for r in errors)  # its queue overflowed
    counts = fan.sink_counts()
    assert counts["failing"]["failed"] == n and counts["slow"]["skipped"] > 0
    assert len(slow.seen) + counts["slow"]["skipped"] <= n


def test_failure_reports_are_rate_limited_and_recovery_is_reported(tmp_path: Path) -> None:
    reports: list = []
    r = ErrorReporter("mqtt", reports.append, every=100)
    for _ in range(250):
        r.failure("down")
    r.success()
    assert [x.get("failed") for x in reports[:-1]] == [1, 100, 200]
    assert reports[-1] == {"event": "sink_recovered", "sink": "mqtt", "after_failures": 250}


def test_sink_threads_end_with_the_run(tmp_path: Path) -> None:
    slow = Slow(0.0)
    fan = Fanout([slow])
    fan.on_event(object())  # a sink without on_event is simply not called
    fan.close(timeout_s=1.0)
    assert slow.closed and not fan.isolated[0]._thread.is_alive()
