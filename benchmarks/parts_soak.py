"""Soak of triggered inspection (no torch): a PLC asks for N parts over Modbus, one at a time, with faults injected.

The PLC is a real pymodbus server that this benchmark drives as a line would: for each part it writes PART and a new
TRIGGER, then waits for RESULT_VALID with its TRIGGER echoed (or its own timeout) and reads RESULT_PART and
RESULT_VERDICT. The runtime (`--trigger modbus` in-process) takes the first frame after each trigger from a looping
camera whose frames have known brightness, hence known verdicts with the brightness test model. Injected faults:

- one frame in every 500 makes the model output NaN; the backend raises every `--raise-every` calls;
- the camera drops out every `--drop-every` reads (the runtime reconnects with back-off: parts meanwhile get
  NO-DECISION "no frame within the deadline");
- mosquitto stops and comes back (`--broker-down-at`, for `--down-s`), and so does the PLC (`--plc-down-at`); OK
  answers go out at QoS 0 and may be lost while the broker is away, NG and NO-DECISION at QoS 1 must not;
- the disk under the NG-image folder is full for a while (`--disk-full-at`).

Checks, from the PLC's view, the event log and MQTT: every part got exactly one answer, the PLC read each answer with
its own part number (0 answers matched to the wrong part), no part whose frame was NG or NaN — or that got no frame —
was answered OK (0 false OKs), and the answers the PLC, the log and MQTT give agree.

    python benchmarks/parts_soak.py [--parts 20000] [--json parts.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks.soak import NAN_VALUE, SIDE, Disk, DroppingCamera, finish, loop_values, truth
from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import NO_DECISION, Judge, run_pipeline
from edge_runtime.sinks.eventlog import EventLog, LogPolicy
from edge_runtime.sinks.evidence import EvidencePolicy, NgSaver
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sinks.modbus import VERDICT_INVALID, VERDICT_NG, VERDICT_NO_DECISION, VERDICT_OK, ModbusConfig
from edge_runtime.sinks.mqtt import MqttConfig, MqttSink
from edge_runtime.sources.live import ReconnectPolicy, live_stream
from edge_runtime.tests.loopback import RecordingServer, run_mosquitto, start_mosquitto
from edge_runtime.tests.support import make_bundle, write_video
from edge_runtime.trigger.frames import triggered_stream
from edge_runtime.trigger.modbus import COIL_RESULT_VALID, REG_PART, REG_RESULT, REG_TRIGGER, ModbusTrigger

VERDICT_NAMES = {VERDICT_OK: "OK", VERDICT_NG: "NG", VERDICT_INVALID: "NG", VERDICT_NO_DECISION: NO_DECISION}


class Referee:
    """Inline: every answered part with the truth of the frame it got (from its pixels), or that it got none."""

    inline = True
    name = "referee"

    def __init__(self) -> None:
        self.truth: dict[str, str] = {}      # part → what its frame is: OK / NG / invalid / none
        self.answers: collections.Counter = collections.Counter()

    def on_frame(self, j: Any) -> None:
        self.answers[j.frame.part] += 1
        self.truth[j.frame.part] = truth(int(np.asarray(j.frame.image)[0, 0, 0]))

    def on_drop(self, d: Any) -> None:
        if d.part is not None:
            self.answers[d.part] += 1
            self.truth[d.part] = "none"

    def on_event(self, ev: Any) -> None:
        pass


class Plc:
    """The PLC: asks for parts one at a time through the handshake, restarts once, keeps what it read."""

    def __init__(self, server: RecordingServer, timeout_s: float) -> None:
        self.server, self.timeout_s = server, timeout_s
        self.read: dict[str, tuple[int, int]] = {}   # part → (RESULT_PART read, verdict)
        self.timed_out: list[str] = []
        self.restarts = 0

    def ask(self, seq: int, part: int) -> None:
        s = self.server
        s.regs.setValues(REG_PART + s.offset(), [part >> 16, part & 0xFFFF])
        s.regs.setValues(REG_TRIGGER + s.offset(), [seq])
        t_end = time.monotonic() + self.timeout_s
        while time.monotonic() < t_end:
            if s.coil(COIL_RESULT_VALID) == 1 and s.registers(REG_RESULT, 1) == [seq]:
                _, high, low, verdict, _ = s.registers(REG_RESULT, 5)
                self.read[str(part)] = ((high << 16) | low, verdict)
                return
            time.sleep(0.0005)
        self.timed_out.append(str(part))  # the PLC rejects a part without an answer: never passed

    def restart(self, down_s: float) -> None:
        port = self.server.port
        self.server.stop()
        time.sleep(down_s)
        self.server = RecordingServer(port=port).start()
        self.restarts += 1
        time.sleep(0.2)  # the runtime reads the cleared TRIGGER register before the next part


def parts_soak(parts: int, fps: float, drop_every: int, raise_every: int, broker_down_at: float, plc_down_at: float,
               down_s: float, disk_full_at: float, disk_full_s: float, deadline_ms: float, work: Path) -> dict:
    bundle = load_bundle(make_bundle(work / "model.slsg", nan_at=NAN_VALUE))
    judge = Judge(select_backend(bundle, "onnx", threads=1), bundle.threshold.value)
    real_run, calls, raised = judge.backend.run, [0], [0]

    def sometimes_raising(batch):
        calls[0] += 1
        if calls[0] % raise_every == 0:
            raised[0] += 1
            raise RuntimeError("injected backend failure")
        return real_run(batch)

    judge.backend.run = sometimes_raising
    camera = DroppingCamera(write_video(work / "loop.mkv", loop_values(), fps=fps, size=(SIDE, SIDE)), fps,
                            drop_every)
    source = live_stream(camera.opener, "partscam", ReconnectPolicy(max_attempts=50, initial_delay_s=0.05),
                         f"looping camera at {fps:g} fps", fps)
    (work / "mosquitto").mkdir()
    broker_proc, broker = start_mosquitto(work / "mosquitto")
    server = RecordingServer().start()
    plc = Plc(server, timeout_s=deadline_ms / 1e3 + 2.0)
    log = EventLog(work / "events.jsonl", policy=LogPolicy(max_bytes=4 * 1024 * 1024, keep=100))
    disk = Disk(disk_full_at, disk_full_s)
    saver = NgSaver(work / "ng", EvidencePolicy(quota_mb=20, min_free_mb=64, burst_keep=5, queue_frames=8),
                    log.write, free_bytes=disk.free_bytes)

    mqtt_got: list[dict] = []
    mqtt_sub = _subscriber(broker.port, mqtt_got)
    mqtt = MqttSink(MqttConfig(f"mqtt://127.0.0.1:{broker.port}/parts", max_queued=100_000), log.write,
                    run_id=log.run_id)
    mqtt.connected.wait(10)
    trigger = ModbusTrigger(ModbusConfig("127.0.0.1", server.port, timeout_s=0.5), log.write, poll_ms=1)
    referee = Referee()
    fan = Fanout([referee, saver, log, mqtt, trigger], report=log.write, max_queue=100_000)
    stream = triggered_stream(source, trigger, deadline_ms)
    loop = threading.Thread(target=run_pipeline, args=(stream, judge, fan), kwargs={"max_consecutive_failures": 0},
                            daemon=True)
    loop.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    broker_at, plc_at = int(parts * broker_down_at), int(parts * plc_down_at)
    broker_back = None
    for k in range(1, parts + 1):
        if k == broker_at:
            broker_proc.terminate()
            broker_proc.wait(10)
            broker_back = time.monotonic() + down_s
        if broker_back is not None and time.monotonic() >= broker_back:
            broker_proc = run_mosquitto(work / "mosquitto", broker.port, broker.tls_port)
            broker_back = None
        if k == plc_at:
            plc.restart(down_s)
        plc.ask(seq=(k % 65535) + 1, part=100_000 + k)
        if k % 2000 == 0:
            print(f"parts: {k}/{parts} ({time.perf_counter() - t0:.0f} s)", flush=True)
    wall = time.perf_counter() - t0
    stream.stop()
    loop.join(30)
    fan.close(timeout_s=30, skip=(log,))
    log.close({"event": "end", "parts": parts})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len({m.get("part") for m in mqtt_got if "part" in m}) < parts:
        time.sleep(0.2)
    mqtt_sub.loop_stop()
    broker_proc.terminate()
    broker_proc.wait(10)
    plc.server.stop()

    asked = [str(100_000 + k) for k in range(1, parts + 1)]
    files = sorted(work.glob("events.jsonl*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    records = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    logged = collections.Counter(r["part"] for r in records if r.get("event") in ("frame", "dropped") and "part" in r)
    log_verdict = {r["part"]: r["verdict"] for r in records if r.get("event") in ("frame", "dropped") and "part" in r}
    mqtt_parts = collections.Counter(m["part"] for m in mqtt_got if "part" in m)
    mqtt_verdict = {m["part"]: m["verdict"] for m in mqtt_got if "part" in m}
    plc_verdict = {p: VERDICT_NAMES[v] for p, (_, v) in plc.read.items()}
    false_ok = [p for p, v in plc_verdict.items() if v == "OK" and referee.truth.get(p) != "OK"]
    wrong_part = [p for p, (echo, _) in plc.read.items() if str(echo) != p]
    answers = collections.Counter(plc_verdict.values())
    checks = {
        "every part answered exactly once (runtime)": all(referee.answers[p] == 1 for p in asked)
        and sum(referee.answers.values()) == parts,
        "every part's answer read by the PLC, none timed out": not plc.timed_out and set(plc.read) == set(asked),
        "0 answers matched to the wrong part": not wrong_part,
        "0 false OKs": not false_ok,
        "the event log holds each part once, with the PLC's verdict": all(logged[p] == 1 for p in asked)
        and all(log_verdict[p] == plc_verdict[p] for p in asked),
        "MQTT holds every NG and NO-DECISION part once (QoS 1), no part twice, each with the PLC's verdict":
        all(mqtt_parts[p] == 1 for p in asked if plc_verdict.get(p) != "OK")
        and max(mqtt_parts.values(), default=0) <= 1 and all(mqtt_verdict[p] == plc_verdict[p] for p in mqtt_verdict),
        "every fault happened": raised[0] > 0 and camera.drops > 0 and plc.restarts == 1 and mqtt.queued > 0
        and any(k.startswith("disk free") for k in saver.counts()["skipped"]) and answers[NO_DECISION] > 0,
    }
    return {
        "parts": parts, "answers_at_the_plc": dict(answers), "false_ok": len(false_ok), "wrong_part": len(wrong_part),
        "plc_timeouts": len(plc.timed_out), "backend_raised": raised[0], "camera_drops": camera.drops,
        "plc_restarts": plc.restarts, "mqtt_queued_while_broker_away": mqtt.queued,
        "evidence": saver.counts(), "sinks": fan.sink_counts(), "deadline_ms": deadline_ms,
        "wall_s": round(wall, 1), "parts_per_s": round(parts / wall, 1),
        "python": platform.python_version(), "machine": platform.machine(),
        "checks": checks, "passed": all(checks.values()),
    }


def _subscriber(port: int, got: list) -> Any:
    """The line controller's MQTT client, with a persistent session: what it is owed survives a broker restart."""
    import paho.mqtt.client as mqtt

    try:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="parts-controller", clean_session=False)
    except AttributeError:
        c = mqtt.Client(client_id="parts-controller", clean_session=False)
    subscribed = threading.Event()
    c.on_connect = lambda cl, *a: cl.subscribe("parts", qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda cl, ud, m: got.append(json.loads(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    subscribed.wait(10)
    return c


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=int, default=20000)
    ap.add_argument("--fps", type=float, default=200.0, help="the camera's frame rate")
    ap.add_argument("--drop-every", type=int, default=3000, help="camera reads between drop-outs")
    ap.add_argument("--raise-every", type=int, default=997, help="backend calls between injected failures")
    ap.add_argument("--broker-down-at", type=float, default=0.3, help="fraction of the parts")
    ap.add_argument("--plc-down-at", type=float, default=0.6, help="fraction of the parts")
    ap.add_argument("--down-s", type=float, default=2.0, help="how long the broker and the PLC stay away")
    ap.add_argument("--disk-full-at", type=float, default=20.0, help="seconds into the run (the NG-image disk)")
    ap.add_argument("--disk-full-s", type=float, default=5.0)
    ap.add_argument("--deadline-ms", type=float, default=500.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the work folder (log, NG images) here")
    args = ap.parse_args(argv)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the PLC's restart is reported by the runtime itself
    work = args.keep or Path(tempfile.mkdtemp(prefix="slsg-parts-"))
    work.mkdir(parents=True, exist_ok=True)
    report = parts_soak(args.parts, args.fps, args.drop_every, args.raise_every, args.broker_down_at,
                        args.plc_down_at, args.down_s, args.disk_full_at, args.disk_full_s, args.deadline_ms, work)
    return finish(report, args.json, work, keep=args.keep is not None)


if __name__ == "__main__":
    sys.exit(main())
