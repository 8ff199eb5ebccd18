"""Frame → prepare → backend → score and verdict → overlay for NG frames, with the time each stage took.

`Judge` handles one frame; `run_pipeline` pulls a stream through it into the sinks and accounts for every
frame: judged, or dropped with the reason (unreadable, bad shape, superseded, stopped, inference failed).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge_runtime.backends.base import Backend, input_size_of
from edge_runtime.overlay import heatmap_overlay
from edge_runtime.preprocess import FrameError, resize, to_bgr_uint8
from edge_runtime.scoring import effective_threshold
from edge_runtime.sources import Dropped, Frame, FrameStream, Item, SourceEvent

STAGES = ("capture", "handoff", "preprocess", "inference", "postprocess", "total")


class InferenceFailed(RuntimeError):
    """The backend failed on one frame; after `max_consecutive_failures` in a row the run stops."""


@dataclass
class Judgement:
    frame: Frame
    score: float
    ng: bool
    threshold: float  # effective threshold (bundle threshold / sensitivity)
    anomaly_map: np.ndarray  # float32 H×W at the model size
    timings_ms: dict[str, float]
    image: np.ndarray | None = None  # the frame as uint8 BGR at its own size (kept for NG frames)
    overlay: np.ndarray | None = None  # heatmap overlay at the frame's size (NG frames only)
    saved: list[str] = field(default_factory=list)  # where sinks stored it
    heads: dict = field(default_factory=dict)  # head name → that head's own score; `score` is what the threshold sees

    @property
    def verdict(self) -> str:
        return "NG" if self.ng else "OK"


class Sink(Protocol):
    def on_frame(self, j: Judgement) -> None: ...
    def on_drop(self, d: Dropped) -> None: ...
    def on_event(self, ev: SourceEvent) -> None: ...


class Judge:
    """One frame's trip through pre-processing, inference and the verdict."""

    def __init__(
        self,
        backend: Backend,
        threshold: float,
        sensitivity: float = 1.0,
        overlay_alpha: float = 0.5,
        overlay_ng: bool = True,
    ) -> None:
        self.backend = backend
        self.size = input_size_of(backend)
        self.threshold = effective_threshold(float(threshold), sensitivity)
        self.overlay_alpha = overlay_alpha
        self.overlay_ng = overlay_ng

    def judge(self, frame: Frame) -> Judgement:
        """Raises FrameError for a frame that cannot be judged and InferenceFailed when the backend fails."""
        t0 = time.perf_counter()
        image = to_bgr_uint8(frame.image)
        prepared = resize(image, self.size)  # image is already uint8 BGR: prepare() minus the second conversion
        t1 = time.perf_counter()
        try:
            out = self.backend.run(prepared[None])
        except Exception as e:  # any backend error costs one frame, not the line
            raise InferenceFailed(f"inference failed: {type(e).__name__}: {e}") from e
        t2 = time.perf_counter()
        score = float(out.score[0])
        ng = bool(score > self.threshold)
        overlay = heatmap_overlay(image, out.maps[0], self.overlay_alpha) if ng and self.overlay_ng else None
        t3 = time.perf_counter()
        timings = {
            "capture": frame.capture_ms,
            "handoff": max(0.0, (t0 - frame.ready) * 1e3),
            "preprocess": (t1 - t0) * 1e3,
            "inference": (t2 - t1) * 1e3,
            "postprocess": (t3 - t2) * 1e3,
        }
        timings["total"] = sum(timings.values())
        return Judgement(
            frame, score, ng, self.threshold, out.maps[0], timings,
            image=image if ng else None, overlay=overlay, heads=out.head_scores(0),
        )


@dataclass
class RunResult:
    frames: int = 0  # items with an id: judged + dropped
    judged: int = 0
    dropped: int = 0
    stopped: bool = False  # by a signal or --max-frames
    gave_up: bool = False  # a live source could not be reconnected
    wall_s: float = 0.0


def _drop(sinks: list[Sink], d: Dropped, result: RunResult) -> None:
    result.dropped += 1
    for s in sinks:
        s.on_drop(d)


def _event(sinks: list[Sink], ev: SourceEvent, result: RunResult) -> None:
    if ev.kind == "gave_up":
        result.gave_up = True
    for s in sinks:
        s.on_event(ev)


def _handle(item: Item, judge: Judge, sinks: list[Sink], result: RunResult) -> bool:
    """Route one item; True when it was a judged frame whose inference failed."""
    if isinstance(item, SourceEvent):
        _event(sinks, item, result)
        return False
    result.frames += 1
    if isinstance(item, Dropped):
        _drop(sinks, item, result)
        return False
    try:
        j = judge.judge(item)
    except FrameError as e:
        _drop(sinks, Dropped(item.id, item.captured, f"bad frame: {e}", item.origin), result)
        return False
    except InferenceFailed as e:
        _drop(sinks, Dropped(item.id, item.captured, str(e), item.origin), result)
        return True
    result.judged += 1
    for s in sinks:
        s.on_frame(j)
    return False


def run_pipeline(
    stream: FrameStream,
    judge: Judge,
    sinks: list[Sink],
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    max_consecutive_failures: int = 20,
) -> RunResult:
    """Pull the stream through the judge into the sinks until it ends, `stop` is set or `max_frames`."""
    stop = stop or stream.stop_event
    result = RunResult()
    t0 = time.perf_counter()
    failures = 0
    try:
        for item in stream:
            failures = failures + 1 if _handle(item, judge, sinks, result) else 0
            if failures >= max_consecutive_failures:
                raise InferenceFailed(
                    f"{failures} frames in a row failed inference; stopping "
                    "(see the dropped reasons in the event log)"
                )
            if stop.is_set() or (max_frames is not None and result.frames >= max_frames):
                result.stopped = True
                break
    finally:
        result.stopped = result.stopped or stop.is_set()
        stream.stop()
        for item in stream.close():
            if isinstance(item, SourceEvent):
                _event(sinks, item, result)
            else:
                result.frames += 1
                _drop(sinks, item, result)
        result.wall_s = time.perf_counter() - t0
    return result
