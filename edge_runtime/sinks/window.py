"""`--show`: a window with each frame, or its overlay when NG."""

from __future__ import annotations

import contextlib

import cv2

from edge_runtime.overlay import heatmap_overlay
from edge_runtime.pipeline import Judgement
from edge_runtime.sinks.fanout import Report
from edge_runtime.sources.items import Dropped, SourceEvent


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
