"""Where judgements go: the JSONL event log (every frame), NG images under a disk quota, a webhook, MQTT,
a window. A sink that fails (full disk, dead server, no display) reports it as an event; the line keeps going.
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import cv2

from edge_runtime.pipeline import Judgement
from edge_runtime.sources import Dropped, SourceEvent
from edge_runtime.stats import RunStats

Report = Callable[[dict], None]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def frame_record(j: Judgement) -> dict:
    f = j.frame
    return {
        "event": "frame",
        "id": f.id,
        "captured": round(f.captured, 6),
        "origin": f.origin,
        "score": round(j.score, 6),
        **({"heads": {k: round(v, 6) for k, v in j.heads.items()}} if j.heads else {}),
        "threshold": round(j.threshold, 6),
        "verdict": j.verdict,
        "latency_ms": {k: round(v, 3) for k, v in j.timings_ms.items()},
        **({"saved": j.saved} if j.saved else {}),
    }


def drop_record(d: Dropped) -> dict:
    return {
        "event": "dropped",
        "id": d.id,
        "captured": round(d.captured, 6),
        "origin": d.origin,
        "reason": d.reason,
    }


def source_record(ev: SourceEvent) -> dict:
    return {"event": "source", "kind": ev.kind, "detail": ev.detail, "at": round(ev.at, 6)}


class EventLog:
    """One JSON line per frame (judged or dropped) and per source or sink event, flushed every second.

    Appends, so a restarted service continues the same file. Thread-safe: the webhook thread reports here too.
    """

    def __init__(self, path: Path, flush_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 — closed in close()
        self._lock = threading.Lock()
        self._interval = flush_interval_s
        self._last_flush = time.monotonic()
        self.lines = 0
        self.lost = 0

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            try:
                self._f.write(line + "\n")
                self.lines += 1
                if time.monotonic() - self._last_flush >= self._interval:
                    self._f.flush()
                    self._last_flush = time.monotonic()
            except OSError as e:
                self.lost += 1
                if self.lost == 1:
                    print(
                        f"slsg-edge: cannot write the event log {self.path} ({e}); the run continues",
                        file=sys.stderr,
                    )

    def on_frame(self, j: Judgement) -> None:
        self.write(frame_record(j))

    def on_drop(self, d: Dropped) -> None:
        self.write(drop_record(d))

    def on_event(self, ev: SourceEvent) -> None:
        self.write(source_record(ev))

    def flush(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._f.flush()

    def close(self) -> None:
        self.flush()
        with self._lock, contextlib.suppress(OSError):
            self._f.close()


_NG_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z_\d+_(frame\.png|overlay\.jpg)$")


class NgStore:
    """NG frames (lossless PNG) and their overlays (JPEG) in one folder, oldest out first beyond the quota."""

    def __init__(self, folder: Path, quota_mb: float, report: Report) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.quota = int(quota_mb * 1024 * 1024)
        self.report = report
        self.evicted = 0
        found = [(p.stat().st_mtime, p) for p in self.folder.iterdir() if _NG_NAME.match(p.name)]
        self._files: collections.deque[tuple[Path, int]] = collections.deque(
            (p, p.stat().st_size) for _, p in sorted(found)
        )
        self.used = sum(n for _, n in self._files)

    def on_frame(self, j: Judgement) -> None:
        if not j.ng or j.image is None:
            return
        stamp = datetime.fromtimestamp(j.frame.captured, timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
        items = [(f"{stamp}_{j.frame.id}_frame.png", cv2.imencode(".png", j.image)[1])]
        if j.overlay is not None:
            items.append(
                (
                    f"{stamp}_{j.frame.id}_overlay.jpg",
                    cv2.imencode(".jpg", j.overlay, [cv2.IMWRITE_JPEG_QUALITY, 90])[1],
                )
            )
        need = sum(int(buf.nbytes) for _, buf in items)
        if need > self.quota:
            self.report(
                {
                    "event": "sink_error",
                    "sink": "save-ng",
                    "id": j.frame.id,
                    "error": f"NG frame needs {need} bytes, more than the whole quota ({self.quota}); "
                    "raise --quota-mb",
                }
            )
            return
        self._evict(need)
        for name, buf in items:
            self._write(self.folder / name, buf.tobytes(), j)

    def _evict(self, need: int) -> None:
        while self._files and self.used + need > self.quota:
            p, n = self._files.popleft()
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                self.report({"event": "sink_error", "sink": "save-ng", "error": f"cannot delete {p}: {e}"})
            self.used -= n
            self.evicted += 1

    def _write(self, path: Path, data: bytes, j: Judgement) -> None:
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            path.unlink(missing_ok=True)
            self.report(
                {
                    "event": "sink_error",
                    "sink": "save-ng",
                    "id": j.frame.id,
                    "error": f"cannot save {path.name}: {e}",
                }
            )
            return
        self._files.append((path, len(data)))
        self.used += len(data)
        j.saved.append(str(path))

    def on_drop(self, d: Dropped) -> None:
        pass

    def on_event(self, ev: SourceEvent) -> None:
        pass


class _BackgroundSender:
    """A bounded queue drained by one thread: a slow or dead server costs notifications, never frames."""

    def __init__(self, name: str, send: Callable[[dict], None], report: Report, max_queue: int = 64) -> None:
        self.name = name
        self._send = send
        self._report = report
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.sent = self.failed = self.skipped = 0
        self._thread = threading.Thread(target=self._loop, name=f"sink-{name}", daemon=True)
        self._thread.start()

    def submit(self, payload: dict) -> None:
        try:
            self._q.put_nowait(payload)
        except queue.Full:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % 100 == 0:
                self._report(
                    {
                        "event": "sink_error",
                        "sink": self.name,
                        "error": f"{self.skipped} notifications skipped: the receiver is too slow",
                    }
                )

    def _loop(self) -> None:
        while True:
            payload = self._q.get()
            if payload is None:
                return
            try:
                self._send(payload)
                self.sent += 1
            except Exception as e:  # any transport error is reported, the thread keeps serving
                self.failed += 1
                self._report(
                    {
                        "event": "sink_error",
                        "sink": self.name,
                        "id": payload.get("id"),
                        "error": f"{type(e).__name__}: {e}",
                    }
                )

    def close(self, timeout_s: float) -> None:
        """Give queued notifications up to `timeout_s` to go out, then leave (the thread is a daemon)."""
        try:
            self._q.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout=timeout_s)


class WebhookSink:
    """HTTP POST of each NG frame's record as JSON, from a background thread with a short timeout."""

    def __init__(self, url: str, report: Report, timeout_s: float = 2.0, only_ng: bool = True) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.only_ng = only_ng
        self._sender = _BackgroundSender("webhook", self._post, report)

    def _post(self, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(
            self.url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 — the user's URL
            if resp.status >= 300:
                raise urllib.error.HTTPError(self.url, resp.status, "unexpected status", resp.headers, None)

    def on_frame(self, j: Judgement) -> None:
        if j.ng or not self.only_ng:
            self._sender.submit(frame_record(j))

    def on_drop(self, d: Dropped) -> None:
        pass

    def on_event(self, ev: SourceEvent) -> None:
        pass

    def close(self) -> None:
        self._sender.close(self.timeout_s)


def parse_mqtt_url(url: str) -> tuple[str, int, str]:
    """mqtt://host[:port]/topic → (host, port, topic)."""
    m = re.fullmatch(r"mqtt://([^/:]+)(?::(\d+))?/(.+)", url)
    if not m:
        raise ValueError(f"MQTT target must look like mqtt://host[:port]/topic, got {url!r}")
    return m.group(1), int(m.group(2) or 1883), m.group(3)


class MqttSink:
    """Publishes every frame's verdict record (QoS 0) to a topic; needs the optional paho-mqtt package."""

    def __init__(self, url: str, report: Report) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise RuntimeError(
                "MQTT needs the paho-mqtt package: pip install 'slsg[mqtt]' (or pip install paho-mqtt)"
            ) from None
        host, port, self.topic = parse_mqtt_url(url)
        try:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # paho-mqtt ≥ 2
        except AttributeError:
            client = mqtt.Client()
        client.connect_async(host, port)
        client.loop_start()
        self._client = client

    def on_frame(self, j: Judgement) -> None:
        self._client.publish(self.topic, json.dumps(frame_record(j)), qos=0)

    def on_drop(self, d: Dropped) -> None:
        self._client.publish(self.topic, json.dumps(drop_record(d)), qos=0)

    def on_event(self, ev: SourceEvent) -> None:
        pass

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class WindowSink:
    """`--show`: the frame, or its overlay when NG. Headless OpenCV has no window; that is reported once."""

    def __init__(self, report: Report, title: str = "slsg-edge") -> None:
        self.report = report
        self.title = title
        self.enabled = True

    def on_frame(self, j: Judgement) -> None:
        if not self.enabled:
            return
        image = j.overlay if j.overlay is not None else j.frame.image
        try:
            cv2.imshow(self.title, image)
            cv2.waitKey(1)
        except cv2.error as e:
            self.enabled = False
            self.report(
                {
                    "event": "sink_error",
                    "sink": "show",
                    "error": f"cannot open a window ({str(e).strip().splitlines()[-1]}): this OpenCV has "
                    "no GUI (opencv-python-headless) or there is no display; run without --show",
                }
            )

    def on_drop(self, d: Dropped) -> None:
        pass

    def on_event(self, ev: SourceEvent) -> None:
        pass

    def close(self) -> None:
        if self.enabled:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)


class StatsSink:
    """Feeds the dashboard and the summary."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def on_frame(self, j: Judgement) -> None:
        self.stats.add_frame(j)

    def on_drop(self, d: Dropped) -> None:
        self.stats.add_drop(d.reason)

    def on_event(self, ev: SourceEvent) -> None:
        pass
