"""MQTT line output (paho-mqtt): verdicts, source events, a heartbeat and a retained status with a last will.

Topics under the base topic T of `mqtt[s]://[user@]host[:port]/T`:

- `T`: every frame's record (`verdict` OK / NG, QoS 1 for NG, 0 for OK) and every dropped frame
  (`verdict` NO-DECISION: QoS 1, like NG, for a frame that was to be judged and could not be; QoS 0 for a live
  camera's frame superseded by a newer one, which is judged instead).
- `T/status` (retained, QoS 1): `{"status": running|degraded|stalled|stopped, "reason", "at", "run_id"}`;
  the broker's last will for this client says `stopped`.
- `T/heartbeat` (QoS 0): counts and status every `heartbeat_s`.
- `T/events` (QoS 1): every source event (opened, read_failed, reconnecting, stalled, …), alarms, warnings.

The client connects in the background and reconnects by itself; while the broker is away QoS 1 messages
wait in a bounded queue. Every publish's return code is checked: a refusal is a `sink_error` line.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from edge_runtime.optional import require
from edge_runtime.records import drop_record, frame_record, json_line, needs_answer, source_record
from edge_runtime.sinks.fanout import ErrorReporter, Report

PASSWORD_ENV = "SLSG_MQTT_PASSWORD"


@dataclass
class MqttTarget:
    host: str
    port: int
    topic: str
    tls: bool
    username: Optional[str] = None


def parse_mqtt_url(url: str) -> tuple[str, int, str]:
    """mqtt://host[:port]/topic → (host, port, topic)."""
    t = parse_mqtt_target(url)
    return t.host, t.port, t.topic


def parse_mqtt_target(url: str) -> MqttTarget:
    """mqtt[s]://[user@]host[:port]/topic; mqtts means TLS (default port 8883). No password in the URL:
    it would show in `ps` and in the unit file; give it by $SLSG_MQTT_PASSWORD or --mqtt-password-file."""
    m = re.fullmatch(r"(mqtts?)://(?:([^@/:]+)@)?([^/:@]+)(?::(\d+))?/(.+)", url)
    if not m:
        if re.match(r"mqtts?://[^/@]+:[^/@]*@", url):
            raise ValueError("put no password in the MQTT URL: set $SLSG_MQTT_PASSWORD or use --mqtt-password-file")
        raise ValueError(f"MQTT target must look like mqtt[s]://[user@]host[:port]/topic, got {url!r}")
    tls = m.group(1) == "mqtts"
    return MqttTarget(m.group(3), int(m.group(4) or (8883 if tls else 1883)), m.group(5), tls, m.group(2))


@dataclass
class MqttConfig:
    url: str
    username: Optional[str] = None  # overrides the URL's user
    password: Optional[str] = None  # else $SLSG_MQTT_PASSWORD
    ca_file: Optional[Path] = None  # TLS: the broker's CA (system CAs when None)
    cert_file: Optional[Path] = None  # TLS client certificate
    key_file: Optional[Path] = None
    tls: bool = False  # also implied by mqtts://
    heartbeat_s: float = 5.0
    keepalive_s: int = 10  # the broker sends the last will this long (×1.5) after the box goes silent
    max_queued: int = 1000  # messages kept while the broker is away
    client_id: str = ""


def _paho() -> Any:
    return require("paho.mqtt.client", "mqtt", "MQTT")


def _failed(rc: Any) -> bool:
    """paho 2 gives a ReasonCode, paho 1 an int."""
    return bool(rc.is_failure) if hasattr(rc, "is_failure") else rc != 0


class MqttSink:
    """Publishes records; `counts()` feeds the heartbeat (the run's stats)."""

    name = "mqtt"

    def __init__(self, cfg: MqttConfig | str, report: Report, run_id: str = "",
                 counts: Optional[Callable[[], dict]] = None) -> None:
        mqtt = _paho()
        cfg = MqttConfig(cfg) if isinstance(cfg, str) else cfg
        target = parse_mqtt_target(cfg.url)
        self.cfg, self.topic, self.run_id = cfg, target.topic, run_id
        self.report = report
        self._counts = counts or (lambda: {})
        self._errors = ErrorReporter(self.name, report, every=100)
        self._status: dict = {"status": "stalled", "reason": "starting", "run_id": run_id}
        self._mqtt = mqtt
        self.connected = threading.Event()
        self.published = 0
        self.queued = 0  # QoS-1 messages handed to paho while the broker was away (sent when it is back)
        try:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id)  # paho-mqtt ≥ 2
        except AttributeError:
            client = mqtt.Client(client_id=cfg.client_id)
        username = cfg.username or target.username
        if username:
            client.username_pw_set(username, cfg.password if cfg.password is not None else os.environ.get(PASSWORD_ENV))
        if target.tls or cfg.tls:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
            )
        client.will_set(self._t("status"), self._status_payload("stopped", "connection lost (last will)"),
                        qos=1, retain=True)
        client.max_queued_messages_set(cfg.max_queued)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(target.host, target.port, keepalive=cfg.keepalive_s)
        client.loop_start()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="mqtt-heartbeat", daemon=True)
        self._beat.start()

    def _t(self, sub: str) -> str:
        return f"{self.topic}/{sub}"

    def _status_payload(self, status: str, reason: str) -> str:
        return json_line({"status": status, "reason": reason, "at": round(time.time(), 3), "run_id": self.run_id})

    # ------------------------------------------------------------------ connection

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        if _failed(rc):
            self._errors.failure(f"broker refused the connection: {rc}")
            return
        self.connected.set()
        self._errors.success()
        # the will may have been published during an earlier drop: say the truth again
        client.publish(self._t("status"), json_line(self._status), qos=1, retain=True)

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        rc = args[1] if len(args) >= 2 else (args[0] if args else 0)
        self.connected.clear()
        if _failed(rc):
            self._errors.failure(f"disconnected from the broker: {rc}; reconnecting")

    # ------------------------------------------------------------------ publishing

    def _publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> None:
        """Raises for a message that will not go out. With the broker away, paho keeps a QoS-1 message in its
        bounded queue (sent on reconnect: `queued`); a QoS-0 one is lost, and that is a failure."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == self._mqtt.MQTT_ERR_NO_CONN and qos > 0:
            self.queued += 1
            return
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish to {topic} refused: {self._mqtt.error_string(info.rc)}")
        self.published += 1

    def on_frame(self, j: Any) -> None:
        self._publish(self.topic, json_line({"run_id": self.run_id, **frame_record(j)}), qos=1 if j.ng else 0)

    def on_drop(self, d: Any) -> None:
        """A part nobody could judge must reach the line as surely as a reject."""
        qos = 1 if needs_answer(d) else 0
        self._publish(self.topic, json_line({"run_id": self.run_id, **drop_record(d)}), qos=qos)

    def on_event(self, ev: Any) -> None:
        self._publish(self._t("events"), json_line({"run_id": self.run_id, **source_record(ev)}), qos=1)

    def on_status(self, change: Any) -> None:
        self._status = {"status": change.status, "reason": change.reason, "at": round(change.at, 3),
                        "run_id": self.run_id}
        self._publish(self._t("status"), json_line(self._status), qos=1, retain=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.cfg.heartbeat_s):
            if not self.connected.is_set():
                continue
            try:
                payload = {"run_id": self.run_id, "at": round(time.time(), 3), **self._counts(),
                           "status": self._status["status"]}
                self._publish(self._t("heartbeat"), json_line(payload), qos=0)
            except Exception as e:  # the heartbeat must outlive a bad moment
                self._errors.failure(f"heartbeat: {type(e).__name__}: {e}")

    def close(self, timeout_s: float = 3.0) -> None:
        """Publish `stopped` (retained), wait for it to leave, disconnect cleanly (no last will)."""
        self._stop.set()
        if self._status.get("status") != "stopped":
            self._status = {"status": "stopped", "reason": "the run ended", "at": round(time.time(), 3),
                            "run_id": self.run_id}
        info = self._client.publish(self._t("status"), json_line(self._status), qos=1, retain=True)
        if self.connected.is_set():
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=timeout_s)
        self._client.disconnect()
        self._client.loop_stop()
