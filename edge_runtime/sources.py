"""Frame sources: cameras (V4L2, CSI, RTSP), video files and image folders, as one stream of items.

A stream yields `Frame`s (an id and a capture time each), `Dropped` frames (id and reason) and
`SourceEvent`s (opened, read failed, reconnecting, gave up, end). Live sources run in a capture thread where
the newest frame wins: a frame the pipeline had no time for is reported as dropped, never lost silently.
"""

from __future__ import annotations

import collections
import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Union

import cv2
import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened at all (no such file or folder, no GStreamer for CSI)."""


@dataclass
class Frame:
    id: int
    captured: float  # wall clock (epoch seconds) when the read completed
    image: Any  # what the source gave, normally uint8 BGR H×W×3; checked by the pipeline
    origin: str  # file name, or the source's name
    capture_ms: float  # time spent reading and decoding
    ready: float  # time.perf_counter() when the read completed, for the hand-off latency


@dataclass
class Dropped:
    id: int
    captured: float
    reason: str
    origin: str


@dataclass
class SourceEvent:
    kind: str  # opened | read_failed | reconnecting | reconnected | gave_up | end
    detail: str
    at: float


Item = Union[Frame, Dropped, SourceEvent]


class CaptureLike(Protocol):
    """What OpenCV's VideoCapture offers and tests can fake."""

    def isOpened(self) -> bool: ...  # noqa: N802 — OpenCV's spelling
    def read(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...
    def get(self, prop: int) -> float: ...


Opener = Callable[[], CaptureLike]


@dataclass
class ReconnectPolicy:
    """Exponential back-off between attempts to reopen a live source; gives up after `max_attempts`."""

    max_attempts: int = 10
    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.initial_delay_s * self.factor ** max(attempt - 1, 0))


class _Ids:
    def __init__(self) -> None:
        self._next = 0

    def take(self) -> int:
        self._next += 1
        return self._next - 1


def _read(cap: CaptureLike) -> tuple[Any, float, str]:
    """(image or None, read time in ms, error text)."""
    t0 = time.perf_counter()
    try:
        ok, image = cap.read()
        err = "" if ok and image is not None else "the source returned no frame"
    except (cv2.error, OSError, RuntimeError) as e:
        ok, image, err = False, None, f"read raised {type(e).__name__}: {e}"
    return (image if ok else None), (time.perf_counter() - t0) * 1e3, err


def _release(cap: CaptureLike | None) -> None:
    if cap is not None:
        with contextlib.suppress(cv2.error, OSError, RuntimeError):
            cap.release()


# ---------------------------------------------------------------- live sources


def live_items(opener: Opener, name: str, policy: ReconnectPolicy, stop: threading.Event) -> Iterator[Item]:
    """Read a live source until stopped; on failure reopen it with back-off, and give up after the bound.

    The attempt counter resets only after a good frame, so a source that opens but never delivers still
    ends after `max_attempts`.
    """
    ids, cap, failures, ever_opened = _Ids(), None, 0, False
    try:
        while not stop.is_set():
            if cap is None:
                if failures:
                    if failures > policy.max_attempts:
                        yield SourceEvent(
                            "gave_up",
                            f"{name}: no frame after {policy.max_attempts} attempts to "
                            "reconnect; check the cable, power and address",
                            time.time(),
                        )
                        return
                    delay = policy.delay(failures)
                    yield SourceEvent(
                        "reconnecting",
                        f"{name}: attempt {failures}/{policy.max_attempts} in {delay:.2f} s",
                        time.time(),
                    )
                    if stop.wait(delay):
                        return
                cap = _try_open(opener)
                if cap is None:
                    failures += 1
                    continue
                yield SourceEvent("reconnected" if ever_opened else "opened", name, time.time())
                ever_opened = True
            image, read_ms, err = _read(cap)
            if image is None:
                failures += 1
                yield SourceEvent("read_failed", f"{name}: {err}", time.time())
                _release(cap)
                cap = None
                continue
            failures = 0
            yield Frame(ids.take(), time.time(), image, name, read_ms, time.perf_counter())
    finally:
        _release(cap)


def _try_open(opener: Opener) -> CaptureLike | None:
    try:
        cap = opener()
    except (cv2.error, OSError, RuntimeError):
        return None
    if cap is None or not cap.isOpened():
        _release(cap)
        return None
    return cap


def opencv_has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    return re.search(r"GStreamer:\s*YES", info) is not None


def csi_pipeline(sensor_id: int, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0) -> str:
    """Jetson CSI camera: Argus ISP in NVMM memory, converted to BGR; appsink keeps only the newest frame."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def rtsp_pipeline(url: str, latency_ms: int = 200) -> str:
    """RTSP over GStreamer; decodebin picks a hardware decoder if any (nvv4l2decoder on Jetson)."""
    return (
        f"rtspsrc location={url} latency={latency_ms} ! decodebin ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def camera_opener(index: int) -> Opener:
    def open_camera() -> CaptureLike:
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(index, api)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return open_camera


def gstreamer_opener(pipeline: str) -> Opener:
    if not opencv_has_gstreamer():
        raise SourceError(
            "this OpenCV build has no GStreamer support, which CSI cameras need: on a Jetson use "
            "the system OpenCV from JetPack (python3-opencv), not opencv-python from pip"
        )
    return lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)


def rtsp_opener(url: str) -> tuple[Opener, str]:
    """GStreamer when OpenCV has it (newest frame only), else FFmpeg with a one-frame buffer."""
    if opencv_has_gstreamer():
        pipe = rtsp_pipeline(url)
        return (lambda: cv2.VideoCapture(pipe, cv2.CAP_GSTREAMER)), pipe

    def open_ffmpeg() -> CaptureLike:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return open_ffmpeg, f"FFmpeg {url}"


# ---------------------------------------------------------------- files


def image_folder_items(folder: Path, stop: threading.Event) -> Iterator[Item]:
    """Every file in name order; one that does not decode is a dropped frame that names it."""
    ids = _Ids()
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    yield SourceEvent("opened", f"{folder}: {len(files)} files", time.time())
    for p in files:
        if stop.is_set():
            return
        t0 = time.perf_counter()
        image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        read_ms = (time.perf_counter() - t0) * 1e3
        if image is None:
            yield Dropped(ids.take(), time.time(), f"cannot decode {p.name} as an image", p.name)
        else:
            yield Frame(ids.take(), time.time(), image, p.name, read_ms, time.perf_counter())
    yield SourceEvent("end", f"{folder}: all files read", time.time())


def video_file_items(path: Path, loop: bool, realtime: bool, stop: threading.Event) -> Iterator[Item]:
    """Frames of a file in order; `loop` restarts it; `realtime` paces reads at the file's frame rate."""
    ids, name = _Ids(), path.name
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path}: is it a video file OpenCV (FFmpeg) can read?")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    period = 1.0 / fps if realtime and fps > 0 else 0.0
    yield SourceEvent("opened", f"{path} ({fps:.3g} fps{', paced' if period else ''})", time.time())
    start, n_read, in_pass = time.perf_counter(), 0, 0
    try:
        while not stop.is_set():
            if period and stop.wait(max(0.0, start + n_read * period - time.perf_counter())):
                return
            image, read_ms, _ = _read(cap)
            if image is None:
                if loop and in_pass > 0:
                    cap.release()
                    cap = cv2.VideoCapture(str(path))
                    in_pass = 0
                    continue
                yield SourceEvent("end", f"{path}: end of file after {n_read} frames", time.time())
                return
            n_read += 1
            in_pass += 1
            yield Frame(ids.take(), time.time(), image, name, read_ms, time.perf_counter())
    finally:
        cap.release()


# ---------------------------------------------------------------- streams

_END = object()
SUPERSEDED = "superseded by a newer frame: the pipeline is slower than the source"
STOPPED = "the run stopped before this frame was judged"


class LatestFrameBuffer:
    """One frame slot where the newest wins; the frame it replaces becomes a `Dropped` event."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._events: collections.deque[Item] = collections.deque()
        self._done = False

    def put(self, item: Item) -> None:
        with self._cond:
            if isinstance(item, Frame):
                if self._frame is not None:
                    old = self._frame
                    self._events.append(Dropped(old.id, old.captured, SUPERSEDED, old.origin))
                self._frame = item
            else:
                self._events.append(item)
            self._cond.notify()

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def get(self, timeout: float) -> Any:
        """The next event, else the newest frame; `_END` once finished and empty; None on timeout."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._events or self._frame is not None or self._done, timeout
            ):
                return None
            if self._events:
                return self._events.popleft()
            if self._frame is not None:
                frame, self._frame = self._frame, None
                return frame
            return _END

    def drain(self, reason: str) -> list[Item]:
        with self._cond:
            out = list(self._events)
            self._events.clear()
            if self._frame is not None:
                f, self._frame = self._frame, None
                out.append(Dropped(f.id, f.captured, reason, f.origin))
            return out


class FrameStream:
    """What the pipeline pulls from; live streams read in a thread (newest wins), files in the caller's."""

    def __init__(
        self,
        name: str,
        produce: Callable[[threading.Event], Iterator[Item]],
        threaded: bool,
        describe: str = "",
    ) -> None:
        self.name = name
        self.describe = describe or name
        self._produce = produce
        self.threaded = threaded
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._buffer: LatestFrameBuffer | None = None
        self._error: BaseException | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def __iter__(self) -> Iterator[Item]:
        if not self.threaded:
            yield from self._produce(self.stop_event)
            return
        self._buffer = LatestFrameBuffer()
        self._thread = threading.Thread(
            target=self._capture, args=(self._buffer,), name=f"capture-{self.name}", daemon=True
        )
        self._thread.start()
        while True:
            item = self._buffer.get(timeout=0.1)
            if item is _END:
                break
            if item is None:
                if self.stop_event.is_set():
                    break
                continue
            yield item
        if self._error is not None:
            raise self._error

    def _capture(self, buffer: LatestFrameBuffer) -> None:
        try:
            for item in self._produce(self.stop_event):
                buffer.put(item)
        except BaseException as e:  # handed to the consumer thread, which re-raises it
            self._error = e
        finally:
            buffer.finish()

    def close(self) -> list[Item]:
        """Stop reading; frames captured but never handed over come back, to be logged as dropped."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        return self._buffer.drain(STOPPED) if self._buffer is not None else []


# ---------------------------------------------------------------- what the CLI opens


@dataclass
class SourceSpec:
    camera: int | None = None
    csi: int | None = None
    rtsp: str | None = None
    video: Path | None = None
    images: Path | None = None
    loop: bool = False
    realtime: bool = False
    reconnect: ReconnectPolicy = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.reconnect is None:
            self.reconnect = ReconnectPolicy()
        given = [k for k in ("camera", "csi", "rtsp", "video", "images") if getattr(self, k) is not None]
        if len(given) != 1:
            raise SourceError(
                "give exactly one source: --camera N, --csi N, --rtsp URL, --video FILE or "
                f"--images DIR (got {', '.join('--' + g for g in given) or 'none'})"
            )


def live_stream(opener: Opener, name: str, policy: ReconnectPolicy, describe: str = "") -> FrameStream:
    return FrameStream(
        name, lambda stop: live_items(opener, name, policy, stop), threaded=True, describe=describe
    )


def open_source(spec: SourceSpec) -> FrameStream:
    """Build the stream a spec names; files and folders are checked now, live sources on first read."""
    if spec.camera is not None:
        return live_stream(
            camera_opener(spec.camera), f"camera{spec.camera}", spec.reconnect, f"V4L2 camera {spec.camera}"
        )
    if spec.csi is not None:
        pipe = csi_pipeline(spec.csi)
        return live_stream(gstreamer_opener(pipe), f"csi{spec.csi}", spec.reconnect, pipe)
    if spec.rtsp is not None:
        opener, describe = rtsp_opener(spec.rtsp)
        return live_stream(opener, "rtsp", spec.reconnect, describe)
    if spec.video is not None:
        path = Path(spec.video)
        if not path.is_file():
            raise SourceError(f"video file {path} does not exist")
        probe = cv2.VideoCapture(str(path))
        opened = probe.isOpened()
        probe.release()
        if not opened:
            raise SourceError(f"cannot open video {path}: is it a video file OpenCV (FFmpeg) can read?")
        return FrameStream(
            path.name,
            lambda stop: video_file_items(path, spec.loop, spec.realtime, stop),
            threaded=spec.realtime,
            describe=str(path),
        )
    folder = Path(spec.images)  # type: ignore[arg-type]
    if not folder.is_dir():
        raise SourceError(f"image folder {folder} does not exist or is not a folder")
    return FrameStream(
        folder.name, lambda stop: image_folder_items(folder, stop), threaded=False, describe=str(folder)
    )


def blank_frame(size: tuple[int, int]) -> np.ndarray:
    """A black frame, for warm-up runs that must not depend on a camera."""
    return np.zeros((size[0], size[1], 3), np.uint8)
