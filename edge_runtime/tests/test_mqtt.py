"""MQTT against a real mosquitto on loopback: verdicts (QoS 1 for NG), retained status with a last will,
heartbeat, every source event, TLS with user and password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'slsg[mqtt]')")

from edge_runtime.backends import select_backend  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402
from edge_runtime.pipeline import Judge, run_pipeline  # noqa: E402
from edge_runtime.sinks.eventlog import EventLog  # noqa: E402
from edge_runtime.sinks.fanout import Fanout  # noqa: E402
from edge_runtime.sinks.mqtt import MqttConfig, MqttSink, parse_mqtt_target  # noqa: E402
from edge_runtime.sources.items import Dropped
from edge_runtime.sources.spec import SourceSpec, open_source  # noqa: E402
from edge_runtime.sources.stream import SUPERSEDED
from edge_runtime.status import (
    StatusChange,
    StatusTracker,  # noqa: E402
)
from edge_runtime.tests.conftest import write_video  # noqa: E402
from edge_runtime.tests.loopback import Broker, Listener, ServiceMissing, start_mosquitto, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    """A real mosquitto on loopback; without one the MQTT tests are skipped with the reason (failed under CI)."""
    try:
        proc, b = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    except ServiceMissing as e:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(str(e))
    yield b
    proc.terminate()
    proc.wait(10)


def _listen(broker: Broker, topic: str) -> Listener:
    return Listener(broker, topic).start()


def test_verdicts_status_events_and_heartbeat(broker: Broker, bundle_dir: Path, tmp_path: Path) -> None:
    values = [20, 220, 30, 240, 10, 200]
    listener = _listen(broker, "line1")
    b = load_bundle(bundle_dir)
    judge = Judge(select_backend(b, "onnx", threads=1), b.threshold.value)
    log = EventLog(tmp_path / "e.jsonl", run_id="run-1")
    status = StatusTracker()
    sink = MqttSink(MqttConfig(f"mqtt://127.0.0.1:{broker.port}/line1", heartbeat_s=0.2), log.write, run_id="run-1",
                    counts=lambda: {"judged": 1})
    assert sink.connected.wait(10)
    fan = Fanout([log, status, sink])
    status.start()
    run_pipeline(open_source(SourceSpec(video=write_video(tmp_path / "v.avi", values))), judge, fan)
    time.sleep(0.5)  # a heartbeat or two
    status.stop("the run ended")
    fan.close(skip=(log,))
    log.close()
    frames = wait_until(lambda: len(listener.on()) == len(values) and listener.on())
    assert [m.payload["verdict"] for m in frames] == ["OK", "NG"] * 3
    assert [m.qos for m in frames] == [0, 1] * 3  # NG at QoS 1
    assert all(m.payload["run_id"] == "run-1" and "score" in m.payload for m in frames)
    statuses = [m.payload["status"] for m in listener.on("status")]
    changes = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]  # (re)announcements repeat
    assert changes == ["stalled", "running", "stopped"] and {m.qos for m in listener.on("status")} == {1}
    kinds = [m.payload["kind"] for m in listener.on("events")]
    assert kinds[0] == "opened" and "end" in kinds and "aspect" in kinds  # source events and warnings
    beats = listener.on("heartbeat")
    assert beats and beats[0].payload["judged"] == 1 and "status" in beats[0].payload
    listener.stop()
    late = _listen(broker, "line1")  # a newcomer learns the status from the retained message
    retained = wait_until(lambda: late.on("status"))
    assert retained[0].retain and retained[0].payload["status"] == "stopped"
    late.stop()


WILL_SCRIPT = """
import sys, time
from edge_runtime.sinks.mqtt import MqttConfig, MqttSink
from edge_runtime.status import StatusChange
sink = MqttSink(MqttConfig(sys.argv[1], keepalive_s=2), print, run_id="doomed")
assert sink.connected.wait(10)
sink.on_status(StatusChange("running", "stalled", "judging frames", time.time()))
time.sleep(0.3)
print("up", flush=True)
time.sleep(60)
"""


def test_the_last_will_says_stopped_when_the_box_dies(broker: Broker) -> None:
    listener = _listen(broker, "will")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", WILL_SCRIPT, f"mqtt://127.0.0.1:{broker.port}/will"],
                            stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"up"
    assert wait_until(lambda: [m for m in listener.on("status") if m.payload["status"] == "running"])
    proc.send_signal(signal.SIGKILL)  # no clean disconnect: the broker publishes the will
    proc.wait(10)
    died = wait_until(lambda: [m for m in listener.on("status") if m.payload["status"] == "stopped"])
    listener.stop()
    assert died and "last will" in died[0].payload["reason"] and died[0].payload["run_id"] == "doomed"


def test_tls_with_user_and_password(broker: Broker, tmp_path: Path) -> None:
    url = f"mqtts://{broker.user}@127.0.0.1:{broker.tls_port}/secure"
    listener = _listen(broker, "secure")  # on the plain listener: topics are shared, logins are per listener
    reports: list = []
    sink = MqttSink(MqttConfig(url, password=broker.password, ca_file=broker.ca), reports.append, run_id="tls")
    assert sink.connected.wait(10), reports
    sink.on_status(StatusChange("running", "stalled", "judging frames", time.time()))
    sink.close()
    wrong: list = []
    bad = MqttSink(MqttConfig(url, password="wrong", ca_file=broker.ca), wrong.append)
    refused = wait_until(lambda: [r for r in wrong if r["event"] == "sink_error"])
    bad.close(timeout_s=0.5)
    assert not bad.connected.is_set() and "refused" in refused[0]["error"]
    got = wait_until(lambda: [m for m in listener.on("status") if m.payload["run_id"] == "tls"])
    listener.stop()
    assert [m.payload["status"] for m in got][:2] == ["stalled", "running"]  # sent over TLS, logged in
    assert not [r for r in reports if r["event"] == "sink_error"]


def test_url_forms() -> None:
    t = parse_mqtt_target("mqtts://line1@broker/plant/line1")
    assert (t.host, t.port, t.topic, t.tls, t.username) == ("broker", 8883, "plant/line1", True, "line1")
    assert parse_mqtt_target("mqtt://b:1884/x").port == 1884
    with pytest.raises(ValueError, match="no password in the MQTT URL"):
        parse_mqtt_target("mqtt://u:pw@b/x")


def test_a_frame_that_could_not_be_judged_reaches_the_line_as_no_decision_at_qos_1(broker: Broker) -> None:
    listener = _listen(broker, "drops")
    sink = MqttSink(MqttConfig(f"mqtt://127.0.0.1:{broker.port}/drops"), print, run_id="drops")
    assert sink.connected.wait(10)
    sink.on_drop(Dropped(7, time.time(), "inference failed: backend error", "camera0"))
    sink.on_drop(Dropped(8, time.time(), SUPERSEDED, "camera0"))
    got = wait_until(lambda: len(listener.on()) == 2 and listener.on())
    sink.close()
    listener.stop()
    by_id = {m.payload["id"]: m for m in got}
    assert by_id[7].payload["verdict"] == "NO-DECISION" and by_id[7].qos == 1
    assert by_id[8].payload["verdict"] == "NO-DECISION" and by_id[8].qos == 0
