"""What the line-side page shows, kept up to date by a sink that never holds up the frame loop.

`LineView` is an isolated sink (its own thread and bounded queue, `sinks.fanout`): per frame it only keeps a
reference to the newest judgement, a score and a latency in rolling windows, and — for an NG frame — lists it as a
reject, writing its picture to the rejects folder at most `reject_pictures_per_s` times a second (a burst of NG
must not load the CPU the frame loop needs). NO-DECISION parts are rejects too, without a picture.
Pictures are made when a browser asks for them, downscaled JPEG, once per frame however many clients ask; each
client gets at most `max_fps` updates a second. The counts come from the run's own counters (`RunStats`), which
count every frame inline, so the page's numbers are exact even when the view's queue skips a notification.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from edge_runtime.overlay import heatmap_overlay
from edge_runtime.pipeline import NO_DECISION, VERDICTS, Judgement
from edge_runtime.preprocess import to_bgr_uint8
from edge_runtime.records import drop_record, frame_record, needs_answer
from edge_runtime.run_counts import RunStats
from edge_runtime.sources.items import Dropped, SourceEvent

#: Scores and total latencies kept for the page's plots.
WINDOW = 600


@dataclass
class ViewConfig:
    max_fps: float = 4.0          # page updates per second and client (each may fetch the newest picture)
    width: int = 480              # live pictures are downscaled to this width (JPEG): a slow link keeps up
    keep_rejects: int = 300       # reject frames kept on disk for review; the oldest unreviewed go first
    reject_pictures_per_s: float = 2.0  # pictures kept of rejects, at most (a burst of NG must not load the CPU)
    jpeg_quality: int = 80
    shifts: tuple = ()            # local times a shift starts ("06:00", "14:00", "22:00"): counts per shift


def shift_bounds(starts: tuple, now: float) -> Optional[tuple[float, float]]:
    """(when the shift running at `now` began, when the next one begins), epoch times: the latest of the `starts`
    (local "HH:MM") at or before now and the first after it; None without shifts."""
    if not starts:
        return None
    today = datetime.fromtimestamp(now).replace(second=0, microsecond=0)
    times = []
    for start in starts:
        hour, minute = (int(x) for x in str(start).split(":"))
        at = today.replace(hour=hour, minute=minute)
        times += [(at + timedelta(days=day)).timestamp() for day in (-1, 0, 1)]
    return max(t for t in times if t <= now), min(t for t in times if t > now)


@dataclass
class Reject:
    """One NG or NO-DECISION part as the rejects grid shows it."""

    key: str                     # file stem: run id and frame id, unique across restarts
    record: dict                 # the event-log record (verdict, scores, part, time, version)
    has_image: bool

    def card(self) -> dict:
        r = self.record
        return {"key": self.key, "id": r.get("id"), "part": r.get("part"), "verdict": r.get("verdict"),
                "score": r.get("score"), "heads": r.get("heads", {}), "threshold": r.get("threshold"),
                "reason": r.get("reason"), "time": r.get("time"), "version": r.get("version"),
                "image": self.has_image}


@dataclass
class Snapshot:
    """One update of the page."""

    seq: int
    data: dict = field(default_factory=dict)


def _jpeg(image: np.ndarray, width: int, quality: int, amap: Optional[np.ndarray] = None) -> bytes:
    """The picture downscaled to `width` first, then its heatmap laid over (the cheap order), as JPEG."""
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    if amap is not None:
        image = heatmap_overlay(image, np.nan_to_num(amap))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class LineView:
    """The page's state: newest frame, plots, rejects, status. Thread-safe; the HTTP threads read it."""

    name = "web"
    wants_images = True

    def __init__(self, stats: RunStats, rejects_dir: Path, run_id: str, cfg: Optional[ViewConfig] = None,
                 version: Callable[[], int] = lambda: 1, threshold: Callable[[], float] = lambda: float("nan"),
                 norms: Callable[[], dict] = dict) -> None:
        self.stats, self.cfg, self.run_id = stats, cfg or ViewConfig(), run_id
        self.version, self.threshold, self.norms = version, threshold, norms
        self.clock: Callable[[], float] = time.time  # wall clock of shifts and records (a test sets its own)
        self.rejects_dir = Path(rejects_dir)
        self.rejects_dir.mkdir(parents=True, exist_ok=True)
        for old in self.rejects_dir.glob("*.[jp][pn]g"):  # an earlier run's working set: reviews were copied out
            old.unlink(missing_ok=True)
        self._lock = threading.Condition()
        self._latest: Optional[Judgement] = None
        self._latest_at = 0.0
        self._tokens, self._refilled = max(self.cfg.reject_pictures_per_s, 1.0), time.monotonic()
        self._live: tuple = (-1, b"")  # (frame id, JPEG) of the newest picture made
        self._scores: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._latency: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._rejects: collections.deque[Reject] = collections.deque()
        self._status: dict = {"status": "stalled", "reason": "starting"}
        self._notes: collections.deque[dict] = collections.deque(maxlen=20)
        self._seq = 0
        self._shift: Optional[float] = None     # when the current shift began (None: counted since the run started)
        self._baseline: dict = {}               # the run's counts when the shift began
        self._shift_ends = float("-inf")        # when the next shift begins (looked up again only then)

    # ------------------------------------------------------------------ sink (the view's own thread)

    def on_frame(self, j: Judgement) -> None:
        now = self.clock()
        self._roll_shift(now)
        with self._lock:
            self._latest, self._latest_at = j, now
            if j.score == j.score:
                self._scores.append(float(j.score))
            self._latency.append(float(j.timings_ms.get("total", 0.0)))
            self._changed()
        if j.ng:
            record = {**frame_record(j), "time": now}
            picture = self._picture_due(time.monotonic())
            image = (to_bgr_uint8(j.frame.image) if j.frame.image is not None else j.image) if picture else None
            self._add_reject(record, image, j.anomaly_map)

    def _roll_shift(self, now: float) -> None:
        """At a shift's start, the run's counts so far become the baseline the shift's counts are taken from."""
        if not self.cfg.shifts or (self._shift is not None and self._shift <= now < self._shift_ends):
            return
        start, self._shift_ends = shift_bounds(self.cfg.shifts, now)
        with self._lock:
            if start != self._shift:
                self._baseline = verdict_counts(self.stats) if self._shift is not None else {}
                self._shift = start

    def _picture_due(self, now: float) -> bool:
        """Whether this reject's picture is kept: at most `reject_pictures_per_s` (a token bucket of one second, on
        the monotonic clock: a wall clock set back must not starve it)."""
        rate = self.cfg.reject_pictures_per_s
        self._tokens = min(max(rate, 1.0), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def on_drop(self, d: Dropped) -> None:
        if not needs_answer(d):
            return
        self._add_reject({**drop_record(d), "time": self.clock(), "version": self.version()}, None)

    def on_event(self, ev: SourceEvent) -> None:
        if ev.channel in ("warning", "alarm"):
            with self._lock:
                self._notes.append({"kind": ev.kind, "channel": ev.channel, "detail": ev.detail, "at": ev.at})
                self._changed()

    def on_status(self, change: Any) -> None:
        with self._lock:
            self._status = {"status": change.status, "reason": change.reason}
            self._changed()

    def note(self, kind: str, detail: str) -> None:
        """A line on the page from the runtime itself (a version switch, a refit)."""
        with self._lock:
            self._notes.append({"kind": kind, "channel": "info", "detail": detail, "at": self.clock()})
            self._changed()

    def _changed(self) -> None:
        self._seq += 1
        self._lock.notify_all()

    def _add_reject(self, record: dict, image: Optional[np.ndarray], amap: Optional[np.ndarray] = None) -> None:
        key = f"{self.run_id}_{record['id']}"
        if image is not None:
            # lossless (it may teach the model) but fast: level 1 costs a third of the default's time
            cv2.imwrite(str(self.rejects_dir / f"{key}.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            (self.rejects_dir / f"{key}.jpg").write_bytes(_jpeg(image, 320, self.cfg.jpeg_quality, amap))
        with self._lock:
            self._rejects.append(Reject(key, record, image is not None))
            while len(self._rejects) > self.cfg.keep_rejects:
                old = self._rejects.popleft()
                if old.has_image:
                    for suffix in (".png", ".jpg"):
                        (self.rejects_dir / f"{old.key}{suffix}").unlink(missing_ok=True)
            self._changed()

    # ------------------------------------------------------------------ readers (HTTP threads)

    def wait(self, after: int, timeout_s: float) -> int:
        """Block until the state changed past `after` (or the timeout); the page's update rate is capped here."""
        with self._lock:
            self._lock.wait_for(lambda: self._seq > after, timeout=timeout_s)
            return self._seq

    def state(self) -> dict:
        with self._lock:
            latest = {**frame_record(self._latest), "time": self._latest_at} if self._latest is not None else {}
            scores, latency = list(self._scores), list(self._latency)
            newest = self._rejects[-1].key if self._rejects else None
            state = {"seq": self._seq, "status": dict(self._status), "latest": latest, "notes": list(self._notes),
                     "rejects": len(self._rejects),
                     "newest_reject": newest}
        self._roll_shift(self.clock())
        counts = verdict_counts(self.stats)
        state["counts"] = counts
        with self._lock:
            state["shift"] = {"since": self._shift, "counts": {k: counts[k] - self._baseline.get(k, 0)
                                                              for k in VERDICTS}}
        state["threshold"] = self.threshold()
        state["version"] = self.version()
        state["latency_ms"] = [round(x, 2) for x in latency[-120:]]
        state["histogram"] = histogram(scores, state["threshold"])
        return state

    def live_jpeg(self) -> tuple:
        """(frame id, JPEG of the newest judged frame with its heatmap); made at most `max_fps` times a second."""
        with self._lock:
            j = self._latest
            cached_id, cached = self._live
        if j is None:
            return -1, b""
        if j.frame.id == cached_id:
            return cached_id, cached
        image = to_bgr_uint8(j.frame.image) if j.frame.image is not None else j.image
        if image is None:
            return cached_id, cached
        jpeg = _jpeg(image, self.cfg.width, self.cfg.jpeg_quality, j.anomaly_map)
        with self._lock:
            self._live = (j.frame.id, jpeg)
        return j.frame.id, jpeg

    def rejects(self, head: Optional[str] = None, limit: int = 60) -> list[dict]:
        """Newest first; `head` keeps those where that head's own normalised score is the largest (who flagged it)."""
        with self._lock:
            cards = [r.card() for r in reversed(self._rejects)]
        if head:
            norms = self.norms()
            cards = [c for c in cards if flagged_by(c["heads"], norms) == head]
        return cards[:limit]

    def reject(self, key: str) -> Optional[Reject]:
        with self._lock:
            return next((r for r in self._rejects if r.key == key), None)

    def reject_image(self, key: str, kind: str) -> Optional[bytes]:
        """The overlay thumbnail ("jpg") or the frame ("png") of a kept reject."""
        if self.reject(key) is None or kind not in ("jpg", "png"):
            return None
        path = self.rejects_dir / f"{key}.{kind}"
        return path.read_bytes() if path.is_file() else None


def histogram(scores: list[float], threshold: float, bins: int = 30) -> dict[str, Any]:
    """Counts of recent scores in equal bins spanning them and the threshold."""
    if not scores:
        return {"edges": [], "counts": []}
    values = np.asarray(scores, dtype=np.float64)
    lo = float(min(values.min(), threshold if threshold == threshold else values.min()))
    hi = float(max(values.max(), threshold if threshold == threshold else values.max()))
    if hi <= lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi * 1.05 if hi > 0 else hi + 1e-6))
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def flagged_by(heads: dict, norms: dict) -> Optional[str]:
    """The head whose own normalised score, (score − good median) / scale as in the fused score, is the largest: the
    head that flagged the part. None without per-head scores or their normalisation."""
    z = {h: (s - norms[h]["location"]) / norms[h]["scale"] for h, s in (heads or {}).items()
         if s is not None and h in norms and norms[h].get("scale")}
    return max(z, key=z.get) if z else None


def verdict_counts(stats: RunStats) -> dict[str, int]:
    """OK / NG / NO-DECISION since the run started, from the run's own counters (exact; they count inline).
    NO-DECISION counts every frame or part that was to be judged and was not (`records.needs_answer`)."""
    return {"OK": stats.ok, "NG": stats.ng + stats.invalid, NO_DECISION: stats.no_decision,
            "fps": round(stats.fps(), 2)}
