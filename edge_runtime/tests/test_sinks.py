"""Sinks keep the line going: quota eviction, a failing disk, a webhook server, MQTT without paho."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.optional import MissingDependency
from edge_runtime.pipeline import Judgement
from edge_runtime.run_counts import percentile_ms
from edge_runtime.sinks.eventlog import EventLog
from edge_runtime.sinks.evidence import NgStore
from edge_runtime.sinks.mqtt import MqttSink, parse_mqtt_url
from edge_runtime.sinks.webhook import WebhookSink
from edge_runtime.sources.items import Dropped, Frame, SourceEvent
from edge_runtime.sources.stream import SUPERSEDED


def _ng(i: int, seed: int = 0) -> Judgement:
    img = np.random.default_rng(seed + i).integers(0, 256, (32, 32, 3), dtype=np.uint8)  # incompressible
    return Judgement(
        Frame(i, 1_700_000_000.0 + i, img, f"f{i}", 0.0, 0.0),
        0.9,
        True,
        0.5,
        np.zeros((8, 8), np.float32),
        {"total": 1.0},
        image=img,
        overlay=img.copy(),
    )


def test_quota_evicts_oldest_first(tmp_path: Path) -> None:
    reports: list[dict] = []
    one = NgStore(tmp_path / "probe", 10, reports.append)
    one.on_frame(_ng(0))
    per_frame = one.used
    store = NgStore(tmp_path / "ng", quota_mb=2.5 * per_frame / 2**20, report=reports.append)
    for i in range(6):
        store.on_frame(_ng(i))
    names = sorted(p.name for p in (tmp_path / "ng").iterdir())  # time-stamped names sort by age
    written = sorted(f"{s}_{k}" for s in range(6) for k in ("frame.png", "overlay.jpg"))
    kept = sorted(n.split("_", 1)[1] for n in names)
    assert store.used <= store.quota and not reports
    assert kept == written[-len(kept) :] and 4 <= len(kept) < 6  # only the newest files stay
    assert store.evicted == 12 - len(kept)
    again = NgStore(tmp_path / "ng", quota_mb=2.5 * per_frame / 2**20, report=reports.append)
    assert again.used == store.used  # the quota survives a restart


def test_unwritable_ng_folder_is_reported_and_the_run_continues(tmp_path: Path) -> None:
    reports: list[dict] = []
    store = NgStore(tmp_path / "ng", quota_mb=10, report=reports.append)
    j = _ng(0)
    (tmp_path / "ng").rename(tmp_path / "gone")  # the disk went away under the store
    store.on_frame(j)
    assert (
        reports and reports[0]["sink"] == "save-ng" and "cannot save" in reports[0]["error"] and not j.saved
    )
    big = NgStore(tmp_path / "small", quota_mb=0.0001, report=reports.append)
    big.on_frame(_ng(1))
    assert "more than the whole quota" in reports[-1]["error"]


class _Collect(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collect.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhook_posts_ng_records_to_a_local_server(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reports: list[dict] = []
    try:
        hook = WebhookSink(f"http://127.0.0.1:{server.server_port}/ng", reports.append, timeout_s=2.0)
        hook.on_frame(_ng(3))
        ok = _ng(4)
        ok.ng = False
        hook.on_frame(ok)
        hook.on_event(SourceEvent("reconnecting", "camera0: attempt 1/10 in 0.50 s", 1.0))
        hook.on_drop(Dropped(5, 2.0, "inference failed: RuntimeError: device lost", "f5"))  # nobody judged it
        hook.on_drop(Dropped(6, 3.0, SUPERSEDED, "f6"))  # a newer view of the scene was judged instead
        hook.close()
    finally:
        server.shutdown()
    assert [r.get("id") for r in _Collect.received] == [3, None, 5] and _Collect.received[0]["verdict"] == "NG"
    assert _Collect.received[1] == {"event": "source", "kind": "reconnecting",
                                    "detail": "camera0: attempt 1/10 in 0.50 s", "at": 1.0}  # the line hears it
    assert _Collect.received[2]["verdict"] == "NO-DECISION" and "inference failed" in _Collect.received[2]["reason"]
    assert not reports


def test_dead_webhook_is_reported_not_raised() -> None:
    reports: list[dict] = []
    hook = WebhookSink("http://127.0.0.1:9/nothing", reports.append, timeout_s=0.5)
    hook.on_frame(_ng(1))
    hook.close()
    assert reports and reports[0]["sink"] == "webhook"
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://x", reports.append)


def test_mqtt_without_paho_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paho", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(MissingDependency, match=r"pip install 'slsg\[mqtt\]'"):
        MqttSink("mqtt://broker/line1", lambda r: None)
    assert parse_mqtt_url("mqtt://broker:1884/a/b") == ("broker", 1884, "a/b")


def test_event_log_appends_and_flushes(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.jsonl", flush_interval_s=0.0, run_id="r1")
    log.write({"event": "x", "n": 1})
    assert json.loads((tmp_path / "e.jsonl").read_text()) == {"run_id": "r1", "event": "x", "n": 1}  # before close
    log.close()
    log2 = EventLog(tmp_path / "e.jsonl")
    log2.write({"event": "y"})
    log2.close()
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 2


def test_percentiles_match_numpy() -> None:
    v = list(np.random.default_rng(1).exponential(5.0, 1001))
    assert percentile_ms(v, 99) == pytest.approx(float(np.percentile(v, 99)))
    assert percentile_ms(v, 50) == pytest.approx(float(np.median(v)))
