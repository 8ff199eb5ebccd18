"""Frame → prepare → backend → score and verdict, with the time each stage took; the loop that feeds sinks.

`Judge` handles one frame; `run_pipeline` pulls a stream through it into the sinks and accounts for every
frame: judged, or dropped with the reason (unreadable, bad shape, superseded, stopped, inference failed).

Fail safe: the verdict is OK only for a finite score at or under the threshold with a finite map. A model
output that is not finite (an FP16 engine that overflowed) is NG with the reason `invalid output`, counted,
and `max_invalid_in_row` of them in a row raise an alarm and stop the run. A frame without a decision
(dropped, stalled) is NO-DECISION, never OK.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge_runtime.backends.base import Backend, input_size_of
from edge_runtime.errors import SlsgError
from edge_runtime.overlay import display_map, heatmap_overlay
from edge_runtime.preprocess import FrameError, resize, to_bgr_uint8
from edge_runtime.scoring import effective_threshold
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sources.items import Dropped, Frame, Item, SourceEvent
from edge_runtime.sources.stream import FrameStream

OK, NG, NO_DECISION = "OK", "NG", "NO-DECISION"
VERDICTS = (OK, NG, NO_DECISION)
INVALID_OUTPUT = "invalid output"
STAGES = ("capture", "handoff", "preprocess", "inference", "postprocess", "total")


class InferenceFailed(SlsgError, RuntimeError):
    """The backend failed on one frame; after `max_consecutive_failures` in a row the run stops."""


class InvalidOutputAlarm(SlsgError, RuntimeError):
    """`max_invalid_in_row` frames in a row had a non-finite score or map: the model cannot be trusted."""


@dataclass
class Judgement:
    frame: Frame
    score: float  # NaN or ±inf only when `reason` is INVALID_OUTPUT
    ng: bool
    threshold: float  # effective threshold (bundle threshold / sensitivity)
    anomaly_map: np.ndarray  # float32 H×W at the model size: what the heatmap shows (`overlay.display_map`)
    timings_ms: dict[str, float]
    image: np.ndarray | None = None  # the frame as uint8 BGR at its own size (kept for NG frames)
    overlay: np.ndarray | None = None  # heatmap overlay at the frame's size (only when asked for inline)
    saved: list[str] = field(default_factory=list)  # where a synchronous store put it (NgStore)
    heads: dict = field(default_factory=dict)  # head name → that head's own score; `score` is what the threshold sees
    reason: str | None = None  # INVALID_OUTPUT when the model's output was not finite
    detail: str | None = None  # what was not finite
    evidence: str | None = None  # what the NG saver did with the image: "queued" or why not
    version: int = 1  # the bundle version that judged it (a line refit makes new ones)

    @property
    def verdict(self) -> str:
        return NG if self.ng else OK

    @property
    def invalid(self) -> bool:
        return self.reason == INVALID_OUTPUT

    def light(self) -> Judgement:
        """The same judgement without pixels, for sinks that only send records (bounded queues stay small)."""
        frame = dataclasses.replace(self.frame, image=None)
        return dataclasses.replace(self, frame=frame, image=None, overlay=None, anomaly_map=None)


class Sink(Protocol):
    """What the pipeline calls. Optional: `on_status(change)`, `close()`, `inline = True` (runs in the frame
    loop: the log, counters; everything else gets its own thread), `wants_images = True` (gets pixels)."""

    def on_frame(self, j: Judgement) -> None: ...
    def on_drop(self, d: Dropped) -> None: ...
    def on_event(self, ev: SourceEvent) -> None: ...


def non_finite(score: float, heads: dict, amap: np.ndarray, head_maps: dict | None = None) -> str | None:
    """What in a model's output is not a finite number, or None when all of it is."""
    bad = []
    if not math.isfinite(score):
        bad.append(f"score {score}")
    bad += [f"{k} score {v}" for k, v in heads.items() if not math.isfinite(v)]
    for name, m in {"": amap, **{f"{k} ": v for k, v in (head_maps or {}).items()}}.items():
        if not np.isfinite(m).all():
            bad.append(f"{int(np.size(m) - np.isfinite(m).sum())} {name}map values")
    return ", ".join(bad) + " not finite" if bad else None


@dataclass(frozen=True)
class ActiveModel:
    """What judges a frame: the backend, its effective threshold, the heads' map normalisation and the bundle version.
    Swapped as one object (`Judge.use`), so a frame never meets one version's model with another's threshold."""

    backend: Backend
    threshold: float  # effective threshold (bundle threshold / sensitivity)
    map_norms: dict
    version: int = 1


class Judge:
    """One frame's trip through pre-processing, inference and the verdict."""

    def __init__(
        self,
        backend: Backend,
        threshold: float,
        sensitivity: float = 1.0,
        overlay_alpha: float = 0.5,
        overlay_ng: bool = False,
        map_norms: dict[str, dict] | None = None,
        version: int = 1,
    ) -> None:
        self.size = input_size_of(backend)
        self.sensitivity = sensitivity
        self.active = ActiveModel(backend, effective_threshold(float(threshold), sensitivity), map_norms or {},
                                  version)
        self.overlay_alpha = overlay_alpha
        self.overlay_ng = overlay_ng  # inline overlay (benchmarks); the NG saver makes its own off the loop

    @property
    def backend(self) -> Backend:
        return self.active.backend

    @property
    def threshold(self) -> float:
        return self.active.threshold

    @property
    def map_norms(self) -> dict:
        return self.active.map_norms  # the fused score's per-head normalisation: heads' own maps on one scale

    def use(self, backend: Backend, threshold: float, map_norms: dict | None, version: int) -> None:
        """Judge the next frame with another bundle version's model (a refit or a rollback); the frame in hand
        finishes with the one it started with."""
        size = input_size_of(backend)
        if size != self.size:
            raise ValueError(f"version {version} takes {size[1]}×{size[0]} frames, the running one "
                             f"{self.size[1]}×{self.size[0]}: a line version keeps the input size")
        self.active = ActiveModel(backend, effective_threshold(float(threshold), self.sensitivity), map_norms or {},
                                  version)

    def judge(self, frame: Frame) -> Judgement:
        """Raises FrameError for a frame that cannot be judged and InferenceFailed when the backend fails."""
        model = self.active
        t0 = time.perf_counter()
        image = to_bgr_uint8(frame.image)
        prepared = resize(image, self.size)  # image is already uint8 BGR: prepare() minus the second conversion
        t1 = time.perf_counter()
        try:
            out = model.backend.run(prepared[None])
        except Exception as e:  # any backend error costs one frame, not the line
            raise InferenceFailed(f"inference failed: {type(e).__name__}: {e}") from e
        t2 = time.perf_counter()
        score, heads, amap = float(out.score[0]), out.head_scores(0), out.maps[0]
        head_maps = {k: v[0] for k, v in out.head_maps.items()}
        bad = non_finite(score, heads, amap, head_maps)
        if head_maps and bad is None:
            amap = display_map(amap, head_maps, model.map_norms)
        ng = bad is not None or bool(score > model.threshold)  # NaN > t is False: test finiteness first
        overlay = (
            heatmap_overlay(image, np.nan_to_num(amap), self.overlay_alpha) if ng and self.overlay_ng else None
        )
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
            frame, score, ng, model.threshold, amap, timings,
            image=image if ng else None, overlay=overlay, heads=heads,
            reason=INVALID_OUTPUT if bad else None, detail=bad, version=model.version,
        )


@dataclass
class RunResult:
    frames: int = 0  # items with an id: judged + dropped
    judged: int = 0  # OK + NG, invalid outputs included
    dropped: int = 0
    invalid: int = 0  # judged NG because the model's output was not finite
    stopped: bool = False  # by a signal or --max-frames
    gave_up: bool = False  # a live source could not be reconnected
    alarm: str | None = None  # why the run stopped itself (invalid outputs, inference failing)
    wall_s: float = 0.0


class _Loop:
    """One run's counters and the routing of each item to the sinks."""

    def __init__(self, judge: Judge, fan: Fanout, result: RunResult) -> None:
        self.judge, self.fan, self.result = judge, fan, result
        self.failures = 0  # inference failures in a row
        self.invalid_run = 0  # invalid outputs in a row
        self.aspect_checked = False

    def event(self, ev: SourceEvent) -> None:
        if ev.kind == "gave_up":
            self.result.gave_up = True
        self.fan.on_event(ev)

    def drop(self, d: Dropped) -> None:
        self.result.dropped += 1
        self.fan.on_drop(d)

    def handle(self, item: Item) -> None:
        if isinstance(item, SourceEvent):
            self.event(item)
            return
        self.result.frames += 1
        if isinstance(item, Dropped):
            self.drop(item)
            return
        try:
            j = self.judge.judge(item)
        except FrameError as e:
            self.drop(Dropped(item.id, item.captured, f"bad frame: {e}", item.origin, item.part))
            return
        except InferenceFailed as e:
            self.failures += 1
            self.drop(Dropped(item.id, item.captured, str(e), item.origin, item.part))
            return
        self.failures = 0
        late = late_by_ms(item)
        if late is not None:  # the line has moved on: a verdict now would be read as the next part's
            self.drop(Dropped(item.id, item.captured, f"no answer within the deadline: ready {late:.0f} ms after it "
                              f"(it would have been {j.verdict})", item.origin, item.part))
            return
        self.result.judged += 1
        if not self.aspect_checked:
            self.aspect_checked = True
            warning = aspect_warning(np.shape(item.image), self.judge.size)
            if warning:
                self.fan.on_event(SourceEvent("aspect", warning, time.time(), channel="warning"))
        if j.invalid:
            self.result.invalid += 1
            self.invalid_run += 1
        else:
            self.invalid_run = 0
        self.fan.on_frame(j)


def late_by_ms(frame: Frame) -> float | None:
    """How long after its deadline the frame's answer is ready; None when it has no deadline or is in time."""
    if frame.deadline is None:
        return None
    late = (time.perf_counter() - frame.deadline) * 1e3
    return late if late > 0 else None


def aspect_warning(frame_shape: tuple, model_hw: tuple, tolerance: float = 0.02) -> str | None:
    """Frames squashed to the model's input look unlike the training images when the aspects differ."""
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    mh, mw = model_hw
    fa, ma = fw / fh, mw / mh
    if abs(fa / ma - 1.0) <= tolerance:
        return None
    return (f"frames are {fw}×{fh} (aspect {fa:.2f}) but the model takes {mw}×{mh} (aspect {ma:.2f}): each frame "
            "is stretched to fit, unlike the training images if they had the model's aspect; set the camera's "
            "--width/--height to the training aspect or export the model at the frames' aspect")


def run_pipeline(
    stream: FrameStream,
    judge: Judge,
    sinks: list[Sink] | Fanout,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    max_consecutive_failures: int = 20,
    max_invalid_in_row: int = 10,
    watchdog=None,
    result: RunResult | None = None,
) -> RunResult:
    """Pull the stream through the judge into the sinks until it ends, `stop` is set or `max_frames`.

    Raises InferenceFailed / InvalidOutputAlarm after that many bad frames in a row (0 = never stop), after
    logging an alarm event. `watchdog` (edge_runtime.watchdog.Watchdog) hears of every frame. `result`, when
    given, is filled in place (so a caller has the counts even when an alarm raises)."""
    stop = stop or stream.stop_event
    fan = sinks if isinstance(sinks, Fanout) else Fanout(sinks)
    result = result if result is not None else RunResult()
    loop = _Loop(judge, fan, result)
    t0 = time.perf_counter()
    if watchdog is not None:
        watchdog.start(fan)
    try:
        for item in stream:
            if watchdog is not None and not isinstance(item, SourceEvent):
                watchdog.seen()
            loop.handle(item)
            _check_alarms(loop, max_consecutive_failures, max_invalid_in_row)
            if stop.is_set() or (max_frames is not None and result.frames >= max_frames):
                result.stopped = True
                break
    finally:
        if watchdog is not None:
            watchdog.stop()
        result.stopped = result.stopped or stop.is_set()
        stream.stop()
        for item in stream.close():
            if isinstance(item, SourceEvent):
                loop.event(item)
            else:
                result.frames += 1
                loop.drop(item)
        result.wall_s = time.perf_counter() - t0
    return result


def _check_alarms(loop: _Loop, max_failures: int, max_invalid: int) -> None:
    if max_failures and loop.failures >= max_failures:
        _alarm(loop, "inference_failed", InferenceFailed(
            f"{loop.failures} frames in a row failed inference; stopping "
            "(see the dropped reasons in the event log)"
        ))
    if max_invalid and loop.invalid_run >= max_invalid:
        _alarm(loop, "invalid_output", InvalidOutputAlarm(
            f"{loop.invalid_run} frames in a row had a non-finite score or map (invalid output); stopping. "
            "The model or engine is broken (an FP16 overflow?): check it with `slsg-edge bench`, rebuild the "
            "engine or use another --backend"
        ))


def _alarm(loop: _Loop, kind: str, error: Exception) -> None:
    loop.result.alarm = str(error)
    loop.fan.on_event(SourceEvent(kind, str(error), time.time(), channel="alarm"))
    raise error
