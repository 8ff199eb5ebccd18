"""A frame source and a trigger → a stream of parts: each trigger takes one frame, named for its part, with the deadline
its answer must meet (`pipeline` turns a late answer into NO-DECISION for that part).

Which frame a part gets: from a live camera, the first frame captured after the trigger (a frame nobody asked for is
no part, and is not reported); from a video file or an image folder, the next one in order (a recorded line played
back part by part). A part that gets no frame in time — the camera is gone, the file has ended — is a `Dropped` item
that names the part, so every output answers NO-DECISION for it.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Union

from edge_runtime.errors import SlsgError
from edge_runtime.sinks.fanout import Report
from edge_runtime.sinks.modbus import ModbusConfig
from edge_runtime.sources.items import Dropped, Frame, FrameIds, Item, SourceEvent
from edge_runtime.sources.stream import FrameStream
from edge_runtime.trigger.modbus import ModbusTrigger
from edge_runtime.trigger.requests import LineTrigger, PartRequest, QueueTrigger, Trigger

DEFAULT_DEADLINE_MS = 1000.0
#: What `--trigger` may name.
TRIGGERS = ("stdin", "modbus", "opcua")


class TriggerError(SlsgError, ValueError):
    """A trigger that cannot be used: the message names the ones there are."""


@dataclass
class TriggerConfig:
    """`slsg-edge run --trigger NAME --deadline-ms MS`."""

    name: str
    deadline_ms: float = DEFAULT_DEADLINE_MS

    def __post_init__(self) -> None:
        if self.name not in TRIGGERS:
            raise TriggerError(f"--trigger {self.name!r} is not a trigger this runtime has: use one of "
                               f"{', '.join(TRIGGERS)}")
        if self.deadline_ms <= 0:
            raise TriggerError(f"--deadline-ms must be > 0, got {self.deadline_ms:g}")

    def open(self, modbus: ModbusConfig | None, opcua: object | None, report: Report) -> Trigger:
        """The trigger; `modbus` is `--modbus`'s PLC (the Modbus trigger's is the same one), `opcua` the `--opcua`
        server whose `Inspect` method fires the parts."""
        if self.name == "stdin":
            return LineTrigger(sys.stdin, "stdin")
        if self.name == "opcua":
            if opcua is None:
                raise TriggerError("--trigger opcua is the Inspect method of the --opcua server: give --opcua too")
            return QueueTrigger("opcua")
        if modbus is None:
            raise TriggerError("--trigger modbus asks the PLC of --modbus HOST:PORT: give --modbus too")
        return ModbusTrigger(modbus, report)


class FrameSlot:
    """Where the source's frames wait for a trigger. Live: the newest frame, replaced by each newer one. Played back:
    one frame at a time, the source waiting until a trigger took it."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self._cond = threading.Condition()
        self._item: Union[Frame, Dropped, None] = None
        self._events: collections.deque[SourceEvent] = collections.deque()
        self._ended: Optional[str] = None

    def put(self, item: Item, stop: threading.Event) -> None:
        with self._cond:
            if isinstance(item, SourceEvent):
                self._events.append(item)
                if item.kind in ("end", "gave_up"):
                    self._ended = item.detail
            elif self.live:
                if isinstance(item, Frame):  # a live source's own drops (superseded frames) ask about no part
                    self._item = item
            else:
                while self._item is not None and not stop.is_set():
                    self._cond.wait(0.05)
                self._item = item
            self._cond.notify_all()

    def end(self, why: str) -> None:
        with self._cond:
            self._ended = self._ended or why
            self._cond.notify_all()

    def events(self) -> list[SourceEvent]:
        with self._cond:
            out = list(self._events)
            self._events.clear()
            return out

    def take(self, after: float, until: float) -> Union[Frame, Dropped, str]:
        """The frame for a part triggered at `after` (perf_counter), waiting until `until` at most; else why not."""
        with self._cond:
            while True:
                item = self._item
                if item is not None and (not self.live or (isinstance(item, Frame) and item.ready >= after)):
                    self._item = None
                    self._cond.notify_all()
                    return item
                if self._ended is not None:
                    return f"the source has ended ({self._ended})"
                left = until - time.perf_counter()
                if left <= 0:
                    return "no frame from the source within the deadline"
                self._cond.wait(left)


def _feed(source: FrameStream, slot: FrameSlot, stop: threading.Event) -> None:
    try:
        for item in source:
            slot.put(item, stop)
            if stop.is_set():
                break
    except Exception as e:  # the source broke: the parts still asked for are answered, not left waiting
        slot.put(SourceEvent("gave_up", f"{source.name}: {type(e).__name__}: {e}", time.time()), stop)
    finally:
        slot.end(f"{source.name} stopped")


def part_items(source: FrameStream, trigger: Trigger, deadline_s: float, live: bool,
               stop: threading.Event) -> Iterator[Item]:
    """One item per part asked for (a frame named for it, or a `Dropped` that names it), the source's events
    between them."""
    slot, done = FrameSlot(live), threading.Event()
    feeder = threading.Thread(target=_feed, args=(source, slot, done), name=f"parts-{source.name}", daemon=True)
    feeder.start()
    ids = FrameIds()
    yield SourceEvent("opened", f"{trigger.name} trigger: one frame per part, answer within "
                      f"{deadline_s * 1e3:.0f} ms", time.time(), channel="trigger")
    try:
        for request in trigger.requests(stop):
            yield from slot.events()
            yield _part(request, slot.take(request.at, request.at + deadline_s), ids.take(), deadline_s, source.name)
        yield from slot.events()
        yield SourceEvent("end", f"{trigger.name} trigger: no more parts", time.time(), channel="trigger")
    finally:
        done.set()
        source.stop()
        feeder.join(timeout=2.0)


def _part(request: PartRequest, got: Union[Frame, Dropped, str], frame_id: int, deadline_s: float,
          origin: str) -> Union[Frame, Dropped]:
    if isinstance(got, Frame):
        return dataclasses.replace(got, id=frame_id, part=request.part, deadline=request.at + deadline_s)
    if isinstance(got, Dropped):  # a played-back frame that cannot be read: that part's answer
        return dataclasses.replace(got, id=frame_id, part=request.part)
    return Dropped(frame_id, time.time(), got, origin, request.part)


def triggered_stream(source: FrameStream, trigger: Trigger, deadline_ms: float = DEFAULT_DEADLINE_MS) -> FrameStream:
    """The stream `slsg-edge run --trigger` judges: parts, not frames. `source` is opened already; a threaded
    (live) source gives the first frame after each trigger, a file source the next frame."""
    live = source.threaded
    return FrameStream(f"{source.name}+{trigger.name}",
                       lambda stop: part_items(source, trigger, deadline_ms / 1e3, live, stop), threaded=False,
                       describe=f"{source.describe}, one frame per {trigger.name} trigger")
