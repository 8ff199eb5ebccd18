"""Soak run of the fail-safe runtime (no torch): a looping camera with injected faults, every frame checked.

A live, threaded source (the camera path: newest frame wins) reads a looping lossless video whose frames have
known brightness, hence known verdicts with the brightness test model, paced at `--fps`. Injected faults:

- the camera drops every `--drop-every` frames (a failed read; the runtime reconnects with back-off);
- one frame in `--nan-every` makes the model output NaN (the bundle's model gives 0/0 for that brightness);
- a sink that fails `--sink-fail` of its calls (isolated: it must cost nothing but its own reports);
- the disk under the event log and the NG folder fills once (`--disk-full-at` s into the run, for
  `--disk-full-s` s): log writes fail with ENOSPC, the NG saver sees free space under its floor;
- a real MQTT broker (mosquitto, when installed) and a real Modbus server (pymodbus) receive the line outputs.

It then checks, from the sinks' own view and from the log files (all rotations):
every frame id accounted for exactly once (judged or dropped with a reason), lines missing from the log
equal to the log's `lost` count, zero false OKs (an NG or NaN frame judged OK), status transitions (one
stall per camera drop, degraded after each NaN and each reconnect, back to running, stopped at the end),
and the MQTT status messages following the same transitions.

    python benchmarks/soak.py [--frames 20000] [--fps 250] [--json soak.json]
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import Judge, run_pipeline
from edge_runtime.records import needs_answer
from edge_runtime.run_counts import RunStats
from edge_runtime.sinks.counters import StatsSink
from edge_runtime.sinks.eventlog import EventLog, LogPolicy
from edge_runtime.sinks.evidence import EvidencePolicy, NgSaver
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sinks.modbus import ModbusConfig, ModbusSink
from edge_runtime.sinks.mqtt import MqttConfig, MqttSink
from edge_runtime.sources.live import ReconnectPolicy, live_stream
from edge_runtime.status import StatusTracker
from edge_runtime.tests.loopback import Listener, RecordingServer, start_mosquitto
from edge_runtime.tests.support import THRESHOLD, make_bundle, write_video
from edge_runtime.watchdog import Watchdog, WatchdogConfig

NAN_VALUE = 7  # the bundle's model outputs NaN for frames of exactly this brightness
LOOP = 500  # frames in the video; the last one is the NaN frame
SIDE = 64


def loop_values(n: int = LOOP) -> list[int]:
    """Mostly good parts (dark), two NG bursts (bright) and one NaN frame at the end of each loop."""
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(20, 110, n)]
    for start, length in ((100, 12), (300, 25)):
        for i in range(start, start + length):
            values[i] = int(rng.integers(170, 250))
    values[-1] = NAN_VALUE
    return values


def truth(value: int) -> str:
    if value == NAN_VALUE:
        return "invalid"
    return "NG" if value / 255.0 > THRESHOLD else "OK"


class Disk:
    """One disk for the log and the NG folder that fills once, between two times."""

    def __init__(self, full_at_s: float, full_for_s: float) -> None:
        self.t0 = time.monotonic()
        self.full_at_s, self.full_for_s = full_at_s, full_for_s
        self.refusals = 0

    @property
    def full(self) -> bool:
        t = time.monotonic() - self.t0
        return self.full_at_s <= t < self.full_at_s + self.full_for_s

    def free_bytes(self, path: Path) -> int:
        return 0 if self.full else shutil.disk_usage(path).free

    def opener(self, path: Path):
        disk = self
        f = open(path, "ab", buffering=0)  # noqa: SIM115 — the log closes it

        class OnDisk:
            def write(self, b: bytes) -> int:
                if disk.full:
                    disk.refusals += 1
                    raise OSError(errno.ENOSPC, "No space left on device")
                return f.write(b)

            def truncate(self, size: int) -> int:
                return f.truncate(size)

            def fileno(self) -> int:
                return f.fileno()

            def close(self) -> None:
                f.close()

        return OnDisk()


class DroppingCamera:
    """A looping video as a camera paced at `fps` that fails a read every `drop_every` frames (all sessions)."""

    def __init__(self, video: Path, fps: float, drop_every: int) -> None:
        self.video, self.period, self.drop_every = video, 1.0 / fps, drop_every
        self.reads = 0
        self.drops = 0
        self.next_t = time.perf_counter()

    def opener(self):
        cam = self
        cap = cv2.VideoCapture(str(self.video))

        class Session:
            def isOpened(self) -> bool:  # noqa: N802
                return cap.isOpened()

            def read(self):
                cam.next_t = max(cam.next_t + cam.period, time.perf_counter() - cam.period)
                delay = cam.next_t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                cam.reads += 1
                if cam.reads % cam.drop_every == 0:
                    cam.drops += 1
                    return False, None  # the camera drops out: live_items reconnects
                ok, image = cap.read()
                if not ok:  # end of the file: loop
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, image = cap.read()
                return ok, image

            def release(self) -> None:
                cap.release()

            def get(self, prop: int) -> float:
                return cap.get(prop)

        return Session()


class FlakySink:
    """Fails a fraction of its calls, like a server that sometimes says no."""

    name = "flaky"

    def __init__(self, rate: float, seed: int = 1) -> None:
        self.rate, self.rng, self.calls, self.raised = rate, np.random.default_rng(seed), 0, 0

    def on_frame(self, j: Any) -> None:
        self.calls += 1
        if self.rng.random() < self.rate:
            self.raised += 1
            raise ConnectionError("injected failure")


class Referee:
    """An inline sink that sees every frame, drop and status change, with pixels: the ground-truth check."""

    inline = True
    name = "referee"

    def __init__(self) -> None:
        self.seen: collections.Counter = collections.Counter()
        self.verdicts: collections.Counter = collections.Counter()
        self.false_ok = 0
        self.wrong = 0
        self.drop_reasons: collections.Counter = collections.Counter()
        self.unanswered = 0  # dropped frames the line must be told NO-DECISION for

    def on_frame(self, j: Any) -> None:
        self.seen[j.frame.id] += 1
        value = int(np.asarray(j.frame.image)[0, 0, 0])
        t = truth(value)
        got = "invalid" if j.invalid else j.verdict
        self.verdicts[(t, got)] += 1
        if got == "OK" and t != "OK":
            self.false_ok += 1
        if got != t:
            self.wrong += 1

    def on_drop(self, d: Any) -> None:
        self.seen[d.id] += 1
        self.drop_reasons[d.reason.split(":")[0]] += 1
        self.unanswered += needs_answer(d)  # the line must hear NO-DECISION for it


def _mqtt(work: Path):
    """mosquitto on loopback and a subscriber on the status topic, when mosquitto is installed."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        return None, None, None
    try:
        (work / "mosquitto").mkdir(exist_ok=True)
        proc, broker = start_mosquitto(work / "mosquitto")
    except Exception as e:  # ServiceMissing, or a broker that does not start
        print(f"soak: no MQTT broker ({e}); running without MQTT", file=sys.stderr)
        return None, None, None
    listener = Listener(broker, "soak").start()
    return proc, broker, listener


def soak(frames: int, fps: float, drop_every: int, nan_every: int, sink_fail: float, disk_full_at: float,
         disk_full_s: float, work: Path, modbus: bool = True, mqtt: bool = True) -> dict[str, Any]:
    if nan_every != LOOP:
        raise ValueError(f"the video loop holds one NaN frame per {LOOP} frames")
    bundle = load_bundle(make_bundle(work / "model.slsg", nan_at=NAN_VALUE))
    judge = Judge(select_backend(bundle, "onnx", threads=1), bundle.threshold.value)
    video = write_video(work / "loop.mkv", loop_values(), fps=fps, size=(SIDE, SIDE))
    camera = DroppingCamera(video, fps, drop_every)
    disk = Disk(disk_full_at, disk_full_s)
    stream = live_stream(camera.opener, "soakcam", ReconnectPolicy(max_attempts=5, initial_delay_s=0.05),
                         f"looping {video.name} at {fps:g} fps", fps)
    log_policy = LogPolicy(max_bytes=1024 * 1024, keep=100)
    log = EventLog(work / "events.jsonl", policy=log_policy, opener=disk.opener)
    writes = [0]
    raw_write = log.write

    def counted_write(record: dict) -> None:
        writes[0] += 1
        raw_write(record)

    log.write = counted_write  # type: ignore[method-assign] — the harness counts what the log was asked
    stats, status, referee = RunStats(), StatusTracker(recover_frames=30), Referee()
    saver = NgSaver(work / "ng", EvidencePolicy(quota_mb=20, min_free_mb=64, burst_keep=5, queue_frames=8),
                    log.write, free_bytes=disk.free_bytes)
    flaky = FlakySink(sink_fail)
    sinks: list[Any] = [StatsSink(stats), referee, saver, log, status, flaky]
    proc = broker = listener = None
    if mqtt:
        proc, broker, listener = _mqtt(work)
        if broker is not None:
            sinks.append(MqttSink(MqttConfig(f"mqtt://127.0.0.1:{broker.port}/soak", heartbeat_s=1.0), log.write,
                                  run_id=log.run_id, counts=stats.snapshot))
            sinks[-1].connected.wait(10)
    plc = None
    if modbus:
        try:
            plc = RecordingServer().start()
            sinks.append(ModbusSink(ModbusConfig("127.0.0.1", plc.port, pulse_ms=2), log.write,
                                    threshold=judge.threshold))
        except ImportError:
            plc = None
    fan = Fanout(sinks, report=log.write, max_queue=256)
    watchdog = Watchdog.for_stream(stream, WatchdogConfig(periods=10, min_s=1.0))
    status.start()
    t0 = time.perf_counter()
    result = run_pipeline(stream, judge, fan, max_frames=frames, max_invalid_in_row=10, watchdog=watchdog)
    wall = time.perf_counter() - t0
    status.stop("soak finished")
    fan.close(timeout_s=10, skip=(log,))
    log_lost_before_end = log.lost
    log.close({"event": "end", "frames": result.frames})

    # ---------------------------------------------------------------- the log files, all rotations
    files = sorted(work.glob("events.jsonl*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    records = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    logged_ids = collections.Counter(r["id"] for r in records if r["event"] in ("frame", "dropped"))
    end = records[-1]
    mqtt_status: list[str] = []
    if listener is not None:
        time.sleep(0.5)
        mqtt_status = [m.payload["status"] for m in listener.on("status")]
        listener.stop()
    if proc is not None:
        proc.terminate()
        proc.wait(10)
    ng_pulses = plc.coil_values(1).count(1) if plc is not None else None
    if plc is not None:
        plc.stop()

    n = result.frames
    accounted = sorted(referee.seen) == list(range(n)) and set(referee.seen.values()) == {1}
    log_accounting = len(records) + end["lost"] == writes[0]
    trans = status.transitions
    expected_stalls = camera.drops + 1  # one per camera drop, and the start
    changes = [s for i, s in enumerate(mqtt_status) if i == 0 or mqtt_status[i - 1] != s]
    checks = {
        "every frame accounted for (sinks)": accounted and result.judged + result.dropped == n,
        "every logged frame id at most once": max(logged_ids.values()) == 1,
        "lines missing from the log == lost": log_accounting,
        "zero false OKs": referee.false_ok == 0,
        "every verdict as the ground truth says": referee.wrong == 0,
        "one stall per camera drop": trans.count("stalled") == expected_stalls,
        "degraded after each NaN and each reconnect, then running": trans.count("degraded") >= camera.drops
        and trans[-2] in ("running", "degraded"),
        "stopped at the end": trans[-1] == "stopped",
        "the disk filled once and lines were counted lost": disk.refusals > 0 and end["lost"] > 0,
        "the flaky sink failed and cost no frame": flaky.raised > 0,
    }
    if mqtt_status:
        checks["MQTT status followed the transitions"] = changes == [
            s for i, s in enumerate(trans) if i == 0 or trans[i - 1] != s]
    if ng_pulses is not None:
        checks["one Modbus NG pulse per NG frame and per frame left without a verdict"] = (
            ng_pulses == stats.ng + stats.invalid + referee.unanswered)
    return {
        "frames": n, "judged": result.judged, "ok": stats.ok, "ng": stats.ng, "invalid": stats.invalid,
        "dropped": result.dropped, "drop_reasons": dict(referee.drop_reasons),
        "verdicts_truth_vs_got": {f"{t}->{g}": c for (t, g), c in sorted(referee.verdicts.items())},
        "false_ok": referee.false_ok, "camera_drops": camera.drops, "stalls_watchdog": watchdog.stalls,
        "status_transitions": dict(collections.Counter(trans)), "log_lines": len(records),
        "log_files": len(files), "log_lost": end["lost"], "log_lost_before_end": log_lost_before_end,
        "log_writes_asked": writes[0], "disk_refusals": disk.refusals,
        "flaky_sink": {"calls": flaky.calls, "raised": flaky.raised}, "sinks": fan.sink_counts(),
        "evidence": saver.counts(), "mqtt_status_messages": len(mqtt_status), "modbus_ng_pulses": ng_pulses,
        "wall_s": round(wall, 1), "judged_fps": round(result.judged / wall, 1),
        "latency_ms_p50_p99": [round(stats.p("total", 50), 3), round(stats.p("total", 99), 3)],
        "alarm": result.alarm, "python": platform.python_version(), "machine": platform.machine(),
        "checks": checks, "passed": all(checks.values()),
    }


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--fps", type=float, default=250.0)
    ap.add_argument("--drop-every", type=int, default=2000)
    ap.add_argument("--nan-every", type=int, default=LOOP)
    ap.add_argument("--sink-fail", type=float, default=0.01)
    ap.add_argument("--disk-full-at", type=float, default=20.0, help="seconds into the run")
    ap.add_argument("--disk-full-s", type=float, default=3.0)
    ap.add_argument("--no-mqtt", action="store_true")
    ap.add_argument("--no-modbus", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the work folder (log, NG images) here")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="slsg-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    report = soak(args.frames, args.fps, args.drop_every, args.nan_every, args.sink_fail, args.disk_full_at,
                  args.disk_full_s, work, modbus=not args.no_modbus, mqtt=not args.no_mqtt)
    return finish(report, args.json, work, keep=args.keep is not None)


def finish(report: dict[str, Any], json_path: Optional[Path], work: Path, keep: bool) -> int:
    """A soak's end: its figures and each check (PASS/FAIL) printed, the JSON written; exit 0 only if all passed."""
    for k, v in report.items():
        if k != "checks":
            print(f"{k:<32} {v}")
    for name, ok in report["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
