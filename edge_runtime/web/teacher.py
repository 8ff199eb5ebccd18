"""The page's actions on the model: review a reject, refit, roll back — each through the line store and its gate."""

from __future__ import annotations

import threading
from typing import Callable, Optional

import cv2
import numpy as np

from edge_runtime.teach.refit import refit
from edge_runtime.teach.store import LineStore, TeachError
from edge_runtime.web.view import LineView


class Teacher:
    """One refit at a time; a refit that passes its gate becomes current at once (the follower switches the line)."""

    def __init__(self, store: LineStore, view: LineView, running: Callable[[], int],
                 threads: Optional[int] = None) -> None:
        self.store, self.view, self.running, self.threads = store, view, running, threads
        self._refitting = threading.Lock()

    def review(self, key: str, label: str, who: str) -> dict:
        reject = self.view.reject(key)
        if reject is None:
            raise TeachError(f"{key} is not among the kept rejects (it may have been pushed out): nothing to review")
        png = self.view.reject_image(key, "png")
        if png is None:
            raise TeachError(f"{key} has no kept picture (a part without a judged frame, or a reject beyond the "
                             "pictures kept per second): it cannot teach the model; review another")
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        path = self.store.review(key, image, reject.record, label, who)
        self.view.note("review", f"{who} marked {key} {label}")
        return {"key": key, "label": label, "file": path.name}

    def refit(self, who: str) -> dict:
        if not self._refitting.acquire(blocking=False):
            raise TeachError("a refit is already running: wait for its result")
        try:
            report = refit(self.store, who, self.threads)
            if report.accepted:
                self.store.switch(report.version, who, action="switch after refit")
            self.view.note("refit", report.summary())
            return report.record()
        finally:
            self._refitting.release()

    def rollback(self, who: str) -> dict:
        bundle = self.store.rollback(who)
        version = self.store.current
        self.view.note("rollback", f"{who} rolled back to version {version}")
        return {"version": version, "bundle": str(bundle.root)}

    def versions(self) -> dict:
        return {"current": self.store.current, "running": self.running(),
                "versions": [v.describe() for v in self.store.versions()], "audit": self.store.audit_log(30)}
