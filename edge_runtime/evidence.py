"""NG evidence off the frame loop: the overlay, PNG/JPEG encoding and file writes run in one saver thread.

The loop only decides, in microseconds, whether an NG frame will be kept (and the log line says so under
`evidence`): kept when the saver's queue has room, the disk had more than the free-space floor at the last
write, and the frame is among the first `burst_keep` of its NG burst (a burst ends at the next OK frame).
The first images of a defect are the ones worth having; a long burst no longer pushes them out of the quota.
Every frame the saver writes, or fails to, is reported as an `evidence` or `sink_error` line.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edge_runtime.sinks import NgStore

Report = Callable[[dict], None]
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
