"""Faults against the real servers on loopback: the backend raising mid-run, the broker restarting, the PLC restarting.
In each, every part gets exactly one answer on every output, none of them a false OK."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import NO_DECISION, Judge, run_pipeline
from edge_runtime.sinks.eventlog import EventLog
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sinks.modbus import COIL_READY, VERDICT_NG, VERDICT_NO_DECISION, VERDICT_OK, ModbusConfig, ModbusSink
from edge_runtime.sinks.mqtt import MqttConfig, MqttSink
from edge_runtime.sources.items import Dropped
from edge_runtime.sources.spec import SourceSpec, open_source
from edge_runtime.status import StatusTracker
from edge_runtime.tests.loopback import RecordingServer, ServiceMissing, run_mosquitto, start_mosquitto, wait_until
from edge_runtime.tests.support import make_bundle, write_video
from edge_runtime.trigger.frames import triggered_stream
from edge_runtime.trigger.modbus import COIL_RESULT_VALID, REG_PART, REG_RESULT, REG_TRIGGER, ModbusTrigger

DARK, BRIGHT = 40, 220


@pytest.fixture
def judge(tmp_path: Path) -> Judge:
    b = load_bundle(make_bundle(tmp_path / "m.slsg"))
    return Judge(select_backend(b, "onnx", threads=1), b.threshold.value)


def _raising_every(judge: Judge, n: int) -> None:
    """The backend raises on every n-th frame (a driver error, an engine that fails mid-run)."""
    real, calls = judge.backend.run, [0]

    def run(batch):
        calls[0] += 1
        if calls[0] % n == 0:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(batch)

    judge.backend.run = run


def _broker(d: Path):
    d.mkdir(parents=True, exist_ok=True)
    try:
        return start_mosquitto(d)
    except ServiceMissing as e:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(str(e))


def _subscriber(port: int, topic: str, client_id: str):
    """A line controller's MQTT client with a persistent session (QoS 1): what the broker holds for it survives."""

    import paho.mqtt.client as mqtt

    got: list[dict] = []
    subscribed = threading.Event()
    try:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    except AttributeError:
        c = mqtt.Client(client_id=client_id, clean_session=False)
    c.on_connect = lambda cl, *a: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda cl, ud, m: got.append(json.loads(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert subscribed.wait(10)
    return c, got


def test_every_output_answers_no_decision_for_the_parts_the_backend_failed_on(judge, tmp_path):
    """The backend raises on every 3rd part: the event log, MQTT (QoS 1) and the PLC's handshake all say NO-DECISION
    for exactly those parts, and the verdict of every other part is its own."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'slsg[mqtt]')")
    pytest.importorskip("pymodbus", reason="pymodbus is not installed (pip install 'slsg[modbus]')")

    proc, broker = _broker(tmp_path / "mqtt")
    plc = RecordingServer().start()
    values = [DARK, BRIGHT, DARK, BRIGHT, DARK, BRIGHT]
    expected = ["OK", "NG", NO_DECISION, "NG", "OK", NO_DECISION]
    try:
        sub, got = _subscriber(broker.port, "line", "controller-1")
        _raising_every(judge, 3)
        trigger = ModbusTrigger(ModbusConfig("127.0.0.1", plc.port), print, poll_ms=2)
        mqtt_sink = MqttSink(MqttConfig(f"mqtt://127.0.0.1:{broker.port}/line"), print, run_id="faults")
        log = EventLog(tmp_path / "events.jsonl")
        fan = Fanout([log, mqtt_sink, trigger])
        stream = triggered_stream(open_source(SourceSpec(video=write_video(tmp_path / "v.mkv", values))), trigger, 3000)
        loop = threading.Thread(target=run_pipeline, args=(stream, judge, fan), daemon=True)
        loop.start()
        time.sleep(0.3)
        plc_view = []
        for seq in range(1, len(values) + 1):
            plc.regs.setValues(REG_PART + plc.offset(), [0, 500 + seq])
            plc.regs.setValues(REG_TRIGGER + plc.offset(), [seq])
            wait_until(lambda s=seq: plc.coil(COIL_RESULT_VALID) == 1 and plc.registers(REG_RESULT, 1) == [s], 10)
            _, _, part, verdict, _ = plc.registers(REG_RESULT, 5)
            plc_view.append((part, verdict))
        stream.stop()
        loop.join(10)
        fan.close()
        log.close()
        wait_until(lambda: len(got) >= len(values), 10)
        sub.loop_stop()
    finally:
        plc.stop()
        proc.terminate()
        proc.wait(10)
    code = {"OK": VERDICT_OK, "NG": VERDICT_NG, NO_DECISION: VERDICT_NO_DECISION}
    assert plc_view == [(500 + i, code[v]) for i, v in enumerate(expected, start=1)]
    mqtt_view = [(m["part"], m["verdict"]) for m in got if "part" in m]
    assert mqtt_view == [(str(500 + i), v) for i, v in enumerate(expected, start=1)]
    failed = [m for m in got if m.get("verdict") == NO_DECISION]
    assert all("illegal memory access" in m["reason"] for m in failed)


def test_answers_given_while_the_broker_was_away_arrive_once_it_is_back(tmp_path):
    """QoS-1 answers published while mosquitto is down wait in the sink's bounded queue and reach a controller with
    a persistent session after the broker restarts; none is lost, none comes twice."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'slsg[mqtt]')")

    d = tmp_path / "mqtt"
    proc, broker = _broker(d)
    sub, got = _subscriber(broker.port, "line", "controller-2")
    sink = MqttSink(MqttConfig(f"mqtt://127.0.0.1:{broker.port}/line"), print, run_id="restart")
    try:
        assert sink.connected.wait(10)
        sink.on_drop(Dropped(1, time.time(), "inference failed: before", "cam", "P-1"))
        wait_until(lambda: len(got) == 1, 10)
        proc.terminate()
        proc.wait(10)  # mosquitto saves the controller's session on the way down
        wait_until(lambda: not sink.connected.is_set(), 10)
        for i in range(2, 7):  # the broker is away: these wait in the sink's queue
            sink.on_drop(Dropped(i, time.time(), "inference failed: while away", "cam", f"P-{i}"))
        time.sleep(0.5)
        proc = run_mosquitto(d, broker.port, broker.tls_port)
        wait_until(lambda: len({m["part"] for m in got}) == 6, 60)
        time.sleep(0.5)  # a duplicate would arrive now
    finally:
        sink.close()
        sub.loop_stop()
        proc.terminate()
        proc.wait(10)
    parts = [m["part"] for m in got]
    assert sorted(parts, key=lambda p: int(p[2:])) == [f"P-{i}" for i in range(1, 7)] and len(parts) == 6
    assert all(m["verdict"] == NO_DECISION for m in got)


def test_a_plc_that_restarts_gets_its_registers_back_and_the_handshake_goes_on(judge, tmp_path):
    """The PLC (a pymodbus server) goes away and comes back on its port: the runtime reports it, rewrites READY and
    the registers, and the next trigger gets its own answer."""
    pytest.importorskip("pymodbus", reason="pymodbus is not installed (pip install 'slsg[modbus]')")

    plc = RecordingServer().start()
    port = plc.port
    reports: list[dict] = []
    cfg = ModbusConfig("127.0.0.1", port, heartbeat_s=0.2, timeout_s=0.5)
    trigger = ModbusTrigger(cfg, reports.append, poll_ms=2)
    status = StatusTracker()
    fan = Fanout([status, ModbusSink(cfg, reports.append), trigger])
    status.start()
    stream = triggered_stream(open_source(SourceSpec(video=write_video(tmp_path / "v.mkv", [DARK, BRIGHT]))), trigger,
                              5000)
    loop = threading.Thread(target=run_pipeline, args=(stream, judge, fan), daemon=True)

    def ask(server: RecordingServer, seq: int, part: int) -> int:
        server.regs.setValues(REG_PART + server.offset(), [0, part])
        server.regs.setValues(REG_TRIGGER + server.offset(), [seq])
        wait_until(lambda: server.coil(COIL_RESULT_VALID) == 1 and server.registers(REG_RESULT, 1) == [seq], 15)
        return server.registers(REG_RESULT, 5)[3]

    try:
        loop.start()
        time.sleep(0.3)
        first = ask(plc, 1, 11)
        plc.stop()
        wait_until(lambda: any(r.get("event") == "sink_error" for r in reports), 10)
        time.sleep(1.0)
        plc = RecordingServer(port=port).start()  # the PLC is back, its memory cleared
        wait_until(lambda: plc.coil(COIL_READY) == 1, 20)  # READY written again on reconnect
        time.sleep(0.3)  # the trigger has read the (cleared) TRIGGER register again
        second = ask(plc, 2, 12)
    finally:
        stream.stop()
        loop.join(10)
        status.stop("the run ended")
        fan.close()
        plc.stop()
    assert (first, second) == (VERDICT_OK, VERDICT_NG)
    assert any(r.get("event") == "sink_recovered" for r in reports)
