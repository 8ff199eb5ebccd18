"""NG evidence off the frame loop: the overlay, PNG/JPEG encoding and file writes run in one saver thread.

The loop only decides, in microseconds, whether an NG frame will be kept (and the log line says so under
`evidence`): kept when the saver's queue has room, the disk had more than the free-space floor at the last
write, and the frame is among the first `burst_keep` of its NG burst (a burst ends at the next OK frame).
The first images of a defect are the ones worth having; a long burst no longer pushes them out of the quota.
Every frame the saver writes, or fails to, is reported as an `evidence` or `sink_error` line.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import re
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from edge_runtime.overlay import heatmap_overlay
from edge_runtime.pipeline import Judgement
from edge_runtime.sinks.fanout import Report
from edge_runtime.sources.items import Dropped, SourceEvent

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

_STOP = object()


@dataclass
class EvidencePolicy:
    quota_mb: float = 1024.0  # files in the folder, oldest out first beyond it
    min_free_mb: float = 512.0  # never fill the disk the log lives on: skip when free space is below this
    queue_frames: int = 8  # NG frames waiting for the saver; more are skipped with a reason
    burst_keep: int = 10  # first N frames of each NG burst; 0 keeps all


class NgSaver:
    """Inline admission (`on_frame` only copies and queues), a background thread that writes."""

    inline = True
    name = "save-ng"

    def __init__(self, folder: Path, policy: EvidencePolicy, report: Report,
                 free_bytes: Optional[Callable[[Path], int]] = None) -> None:
        self.store = NgStore(folder, policy.quota_mb, report)  # creates the folder (OSError if it cannot)
        self.folder = self.store.folder
        self.policy = policy
        self.report = report
        self._free_bytes = free_bytes or (lambda p: shutil.disk_usage(p).free)
        self._free = self._free_bytes(self.folder)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, policy.queue_frames))
        self._burst = 0  # NG frames in the current burst
        self.queued = self.saved = 0
        self.skipped: dict = {}
        self._thread = threading.Thread(target=self._loop, name="ng-saver", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the loop's side

    def on_frame(self, j: Any) -> None:
        if not j.ng:
            self._burst = 0
            return
        self._burst += 1
        if j.image is None:
            return
        reason = self._refusal()
        if reason is None:
            try:
                self._q.put_nowait((j, np.array(j.image, copy=True), np.array(j.anomaly_map, copy=True)))
                self.queued += 1
                j.evidence = "queued"
                return
            except queue.Full:
                reason = f"saver queue full ({self.policy.queue_frames} frames waiting)"
        key = reason.split(" (")[0]
        self.skipped[key] = self.skipped.get(key, 0) + 1
        j.evidence = f"skipped: {reason}"

    def _refusal(self) -> Optional[str]:
        keep = self.policy.burst_keep
        if keep and self._burst > keep:
            return f"burst: the first {keep} NG frames of this burst are kept"
        floor = int(self.policy.min_free_mb * 1024 * 1024)
        if self._free < floor:
            return f"disk free below the floor ({self._free // 2**20} MB < {self.policy.min_free_mb:g} MB)"
        return None

    def on_drop(self, d: Any) -> None:
        pass

    def on_event(self, ev: Any) -> None:
        pass

    # ------------------------------------------------------------------ the saver thread

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            j, image, amap = item
            self._save(j, image, amap)

    def _save(self, j: Any, image: np.ndarray, amap: np.ndarray) -> None:
        with contextlib.suppress(OSError):
            self._free = self._free_bytes(self.folder)
        floor = int(self.policy.min_free_mb * 1024 * 1024)
        if self._free < floor:
            self.report({"event": "evidence", "id": j.frame.id, "saved": [],
                         "error": f"not saved: disk free {self._free // 2**20} MB is below the floor"})
            return
        copy = type(j)(j.frame, j.score, j.ng, j.threshold, amap, j.timings_ms, image=image)
        try:
            paths = self.store.save(copy)
        except Exception as e:  # encoding or writing: this frame's evidence, not the run
            self.report({"event": "sink_error", "sink": self.name, "id": j.frame.id,
                         "error": f"{type(e).__name__}: {e}"})
            return
        if paths:
            self.saved += 1
            self.report({"event": "evidence", "id": j.frame.id, "saved": paths})

    def counts(self) -> dict:
        return {"queued": self.queued, "saved": self.saved, "skipped": dict(self.skipped),
                "evicted": self.store.evicted}

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (up to `timeout_s`), then stop."""
        try:
            self._q.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout=timeout_s)
