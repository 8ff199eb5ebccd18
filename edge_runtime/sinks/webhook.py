"""The webhook: an HTTP POST per NG frame, per frame without a verdict, per source event and status change,
sent from a bounded background queue so a slow or dead server costs notifications, never frames."""

from __future__ import annotations

import queue
import threading
import urllib.error
import urllib.request
from typing import Callable

from edge_runtime.pipeline import Judgement
from edge_runtime.records import drop_record, frame_record, json_line, needs_answer, source_record
from edge_runtime.sinks.fanout import Report
from edge_runtime.sources.items import Dropped, SourceEvent


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
