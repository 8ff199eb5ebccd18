"""Where judgements go besides the event log: NG images under a disk quota, a webhook, a window, counters.

Every sink here is isolated by `edge_runtime.fanout` (its own thread and bounded queue): one that fails
(full disk, dead server, no display) reports it as a `sink_error` line and the line keeps going. MQTT and
Modbus live in `edge_runtime.mqtt` and `edge_runtime.modbus`, the event log in `edge_runtime.eventlog`.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import re
import threading
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge_runtime.eventlog import EventLog
from edge_runtime.overlay import heatmap_overlay
from edge_runtime.pipeline import Judgement
from edge_runtime.records import drop_record, frame_record, iso, json_line, needs_answer, source_record
from edge_runtime.run_counts import RunStats
from edge_runtime.sources import Dropped, SourceEvent

__all__ = [
    "EventLog", "NgStore", "StatsSink", "WebhookSink", "WindowSink", "drop_record", "frame_record",
    "iso", "source_record",
]

Report = Callable[[dict], None]


_NG_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z_\d+_(frame\.png|overlay\.jpg)$")


class NgStore:
    """NG frames (lossless PNG) and their overlays (JPEG) in one folder, oldest out first beyond the quota."""

    name = "save-ng"
    wants_images = True

    def __init__(self, folder: Path, quota_mb: float, report: Report) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.quota = int(quota_mb * 1024 * 1024)
        self.report = report
        self.evicted = 0
        found = [(p.stat().st_mtime, p) for p in self.folder.iterdir() if _NG_NAME.match(p.name)]
        self._files: collections.deque = collections.deque(
            (p, p.stat().st_size) for _, p in sorted(found)
        )
        self.used = sum(n for _, n in self._files)

    def on_frame(self, j: Judgement) -> None:
        if j.ng and j.image is not None:
            self.save(j)

    def save(self, j: Judgement) -> list:
        """Write the frame (PNG) and its overlay (JPEG); returns the paths written."""
        stamp = datetime.fromtimestamp(j.frame.captured, timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
        items = [(f"{stamp}_{j.frame.id}_frame.png", cv2.imencode(".png", j.image)[1])]
        if j.overlay is None and j.anomaly_map is not None:
            j.overlay = heatmap_overlay(j.image, np.nan_to_num(j.anomaly_map))
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
            return []
        self._evict(need)
        return [p for name, buf in items if (p := self._write(self.folder / name, buf.tobytes(), j))]

    def _evict(self, need: int) -> None:
        while self._files and self.used + need > self.quota:
            p, n = self._files.popleft()
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                self.report({"event": "sink_error", "sink": "save-ng", "error": f"cannot delete {p}: {e}"})
            self.used -= n
            self.evicted += 1

    def _write(self, path: Path, data: bytes, j: Judgement) -> str | None:
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
            return None
        self._files.append((path, len(data)))
        self.used += len(data)
        j.saved.append(str(path))
        return str(path)

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
    """HTTP POST of each NG frame's record, each frame without a verdict (NO-DECISION), every source event and
    status change, as JSON, from a background thread with a short timeout."""

    name = "webhook"

    def __init__(self, url: str, report: Report, timeout_s: float = 2.0, only_ng: bool = True) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.only_ng = only_ng
        self._sender = _BackgroundSender("webhook", self._post, report)

    def _post(self, payload: dict) -> None:
        data = json_line(payload).encode("utf-8")
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
        if needs_answer(d):  # a part nobody judged is a reject the receiver must hear about, like an NG
            self._sender.submit(drop_record(d))

    def on_event(self, ev: SourceEvent) -> None:
        self._sender.submit(source_record(ev))

    def on_status(self, change) -> None:
        self._sender.submit(change.record())

    def close(self) -> None:
        self._sender.close(self.timeout_s)


class WindowSink:
    """`--show`: the frame, or its overlay when NG. Headless OpenCV has no window; that is reported once."""

    name = "show"
    wants_images = True

    def __init__(self, report: Report, title: str = "slsg-edge") -> None:
        self.report = report
        self.title = title
        self.enabled = True

    def on_frame(self, j: Judgement) -> None:
        if not self.enabled:
            return
        image = j.overlay if j.overlay is not None else j.frame.image
        if j.ng and j.overlay is None and j.image is not None and j.anomaly_map is not None:
            with contextlib.suppress(ValueError):
                image = heatmap_overlay(j.image, j.anomaly_map)
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
    """Feeds the dashboard and the summary (inline: counting is cheap and must not be skipped)."""

    inline = True
    name = "stats"

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def on_frame(self, j: Judgement) -> None:
        self.stats.add_frame(j)

    def on_drop(self, d: Dropped) -> None:
        self.stats.add_drop(d.reason)

    def on_event(self, ev: SourceEvent) -> None:
        pass

    def on_status(self, change) -> None:
        self.stats.status = change.status

