"""The line always knows: a stalled source is noticed within the limit, status follows, systemd hears."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import Judge, run_pipeline
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sinks.systemd import SystemdNotifier
from edge_runtime.sources.items import Dropped, Frame, SourceEvent
from edge_runtime.sources.stream import FrameStream
from edge_runtime.status import DEGRADED, RUNNING, STALLED, STOPPED, StatusTracker
from edge_runtime.tests.support import gray, make_bundle
from edge_runtime.watchdog import Watchdog, WatchdogConfig

PERIOD = 0.01  # a 100 fps fake camera


class Events:
    inline = True

    def __init__(self) -> None:
        self.events, self.statuses, self.t0 = [], [], time.monotonic()

    def on_event(self, ev) -> None:
        self.events.append((ev.kind, time.monotonic() - self.t0))

    def on_status(self, change) -> None:
        self.statuses.append(change.status)


def _camera(script: list, stop_after: threading.Event):
    """Frames at PERIOD; ("hang", s) blocks like a stuck V4L2 read; ("event", kind) a source event."""

    def produce(stop: threading.Event):
        i = 0
        for step in script:
            if step[0] == "frames":
                for _ in range(step[1]):
                    time.sleep(PERIOD)
                    yield Frame(i, time.time(), gray(40, 64, 64), "cam", 0.0, time.perf_counter())
                    i += 1
            elif step[0] == "hang":
                time.sleep(step[1])
            else:
                yield SourceEvent(step[1], "scripted", time.time())
        stop_after.set()

    return FrameStream("cam", produce, threaded=True, frame_period_s=PERIOD)


@pytest.fixture
def judge(tmp_path: Path) -> Judge:
    b = load_bundle(make_bundle(tmp_path / "m.slsg"))
    return Judge(select_backend(b, "onnx", threads=1), b.threshold.value)


def test_a_stalled_source_raises_stalled_within_the_limit_and_resumes(judge: Judge) -> None:
    done = threading.Event()
    stream = _camera([("frames", 5), ("hang", 0.6), ("frames", 40)], done)
    cfg = WatchdogConfig(periods=10, min_s=0.0)
    wd = Watchdog.for_stream(stream, cfg)
    assert wd.limit_s == pytest.approx(10 * PERIOD)
    events, status = Events(), StatusTracker(recover_frames=20)
    fan = Fanout([events, status])
    status.start()
    threading.Thread(target=lambda: (done.wait(10), stream.stop()), daemon=True).start()
    run_pipeline(stream, judge, fan, watchdog=wd)
    kinds = [k for k, _ in events.events]
    assert kinds.count("stalled") == 1 and kinds.index("stalled") < kinds.index("resumed")
    t_stalled = dict(events.events)["stalled"]
    t_last_frame_before = 5 * PERIOD
    assert t_stalled - t_last_frame_before < wd.limit_s + 0.15  # within the limit (+ one tick, slack for CI)
    assert status.transitions[:4] == [STALLED, RUNNING, STALLED, DEGRADED] and status.transitions[-1] == RUNNING
    status.stop("done")
    assert status.status == STOPPED and wd.stalls == 1


def test_the_limit_follows_the_source() -> None:
    cfg = WatchdogConfig(periods=10, min_s=1.0, unpaced_s=30)
    assert cfg.limit_s(1 / 30) == pytest.approx(1.0)  # 333 ms would be too tight: the floor holds
    assert cfg.limit_s(1 / 5) == pytest.approx(2.0)
    assert cfg.limit_s(None) == 30.0


def test_status_goes_stalled_on_reconnects_and_degraded_on_trouble() -> None:
    st = StatusTracker(recover_frames=2)
    seen: list = []

    class Fan:
        def on_status(self, c) -> None:
            seen.append((c.status, c.judging))

    st.attach(Fan())
    st.start()

    class J:
        def __init__(self, i: int, invalid: bool = False) -> None:
            self.invalid, self.frame = invalid, Frame(i, 0.0, None, "x", 0.0, 0.0)

    st.on_frame(J(0))
    st.on_drop(Dropped(1, 0.0, "superseded by a newer frame", "x"))  # normal for a live camera
    assert st.status == RUNNING
    st.on_frame(J(2, invalid=True))
    assert st.status == DEGRADED
    st.on_frame(J(3))
    st.on_frame(J(4))
    assert st.status == RUNNING
    st.on_event(SourceEvent("reconnecting", "camera0: attempt 1/10", 0.0))
    assert st.status == STALLED
    st.on_event(SourceEvent("invalid_output", "10 in a row", 0.0, channel="alarm"))
    assert seen == [(STALLED, False), (RUNNING, True), (DEGRADED, True), (RUNNING, True), (STALLED, False),
                    (STOPPED, False)]


def test_systemd_gets_ready_watchdog_pings_status_and_stopping(tmp_path: Path, judge: Judge) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(0.5)
    notifier = SystemdNotifier(path, min_interval_s=0.0)
    status = StatusTracker()
    fan = Fanout([status, notifier])
    notifier.ready("judging cam")
    status.start()
    done = threading.Event()
    stream = _camera([("frames", 5)], done)
    threading.Thread(target=lambda: (done.wait(10), stream.stop()), daemon=True).start()
    result = run_pipeline(stream, judge, fan)
    fan.close()
    got = []
    while True:
        try:
            got.append(server.recv(4096).decode())
        except socket.timeout:
            break
    server.close()
    assert got[0] == "READY=1\nSTATUS=judging cam"
    # one per judged frame (rate limit off); a busy machine may see a live frame superseded, never pinged for
    assert result.judged >= 1 and got.count("WATCHDOG=1") == result.judged
    assert "STATUS=running: judging frames" in got and got[-1] == "STOPPING=1"


def test_no_notify_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    n.ready()
    n.close()
    assert not n.enabled and n.sent == 0
