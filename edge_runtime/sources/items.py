"""What a frame source yields: `Frame`s (an id and a capture time each), `Dropped` frames (id and reason) and
`SourceEvent`s (opened, read failed, reconnecting, gave up, end) — one stream of items, whatever the source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from edge_runtime.errors import SlsgError


class SourceError(SlsgError, RuntimeError):
    """A source that cannot be opened at all (no such file or folder, no GStreamer for CSI)."""


@dataclass
class Frame:
    id: int
    captured: float  # wall clock (epoch seconds) when the read completed
    image: Any  # what the source gave, normally uint8 BGR H×W×3; checked by the pipeline
    origin: str  # file name, or the source's name
    capture_ms: float  # time spent reading and decoding
    ready: float  # time.perf_counter() when the read completed, for the hand-off latency
    part: Optional[str] = None  # the part this frame shows, when a trigger asked for it (`edge_runtime.trigger`)
    deadline: Optional[float] = None  # time.perf_counter() by which its answer must be out; later is NO-DECISION


@dataclass
class Dropped:
    id: int
    captured: float
    reason: str
    origin: str
    part: Optional[str] = None  # the part left without a verdict, when a trigger asked for one


@dataclass
class SourceEvent:
    """Something that happened to the input (channel "source": opened | read_failed | reconnecting |
    reconnected | gave_up | end | stalled | resumed), or to the run ("alarm", "warning")."""

    kind: str
    detail: str
    at: float
    channel: str = "source"


Item = Union[Frame, Dropped, SourceEvent]


class FrameIds:
    def __init__(self) -> None:
        self._next = 0

    def take(self) -> int:
        self._next += 1
        return self._next - 1
