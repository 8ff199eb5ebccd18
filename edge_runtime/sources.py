"""Frame sources: cameras (V4L2, CSI, RTSP), video files and image folders, as one stream of items.

A stream yields `Frame`s (an id and a capture time each), `Dropped` frames (id and reason) and
`SourceEvent`s (opened, read failed, reconnecting, gave up, end). Live sources run in a capture thread where
the newest frame wins: a frame the pipeline had no time for is reported as dropped, never lost silently.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Union

import cv2
import numpy as np

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


@dataclass
class Dropped:
    id: int
    captured: float
    reason: str
    origin: str


@dataclass
class SourceEvent:
    """Something that happened to the input (channel "source": opened | read_failed | reconnecting |
    reconnected | gave_up | end | stalled | resumed), or to the run ("alarm", "warning")."""

    kind: str
    detail: str
    at: float
    channel: str = "source"


Item = Union[Frame, Dropped, SourceEvent]


class CaptureLike(Protocol):
    """What OpenCV's VideoCapture offers and tests can fake."""

    def isOpened(self) -> bool: ...  # noqa: N802 — OpenCV's spelling
    def read(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...
    def get(self, prop: int) -> float: ...


Opener = Callable[[], "CaptureLike"]


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
                yield SourceEvent("reconnected" if ever_opened else "opened", _opened_detail(name, cap), time.time())
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


def _opened_detail(name: str, cap: CaptureLike) -> str:
    try:
        return f"{name}: {describe_capture(cap)}"
    except Exception:  # a fake or odd capture without properties
        return name


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


@dataclass
class CameraSettings:
    """What to ask of a live camera; None leaves the driver's default. CSI also locks exposure/white balance."""

    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    fourcc: Optional[str] = None  # V4L2 pixel format, e.g. MJPG or YUYV
    exposure_us: Optional[int] = None  # CSI: fixed exposure time (locks auto-exposure)
    gain: Optional[float] = None  # CSI: fixed analogue gain
    ae_lock: bool = False  # CSI: lock auto-exposure where it settles
    awb_lock: bool = False  # CSI: lock auto white balance where it settles
    open_timeout_s: float = 10.0  # where the OpenCV backend supports it
    read_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.fourcc is not None and len(self.fourcc) != 4:
            raise SourceError(f"--fourcc must be 4 characters (e.g. MJPG, YUYV), got {self.fourcc!r}")
        for name in ("width", "height", "fps", "exposure_us"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise SourceError(f"--{name.replace('_', '-')} must be > 0, got {v}")


def is_jetson() -> bool:
    """JetPack writes /etc/nv_tegra_release; the device tree names the module."""
    if Path("/etc/nv_tegra_release").exists():
        return True
    with contextlib.suppress(OSError):
        return "nvidia" in Path("/proc/device-tree/compatible").read_bytes().decode("latin-1").lower()
    return False


def csi_pipeline(
    sensor_id: int, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0,
    settings: Optional[CameraSettings] = None,
) -> str:
    """Jetson CSI camera: Argus ISP in NVMM memory, converted to BGR; appsink keeps only the newest frame.

    A fixed exposure (`exposure_us`, in ns for Argus) and gain, or `ae_lock`/`awb_lock`, keep the picture
    the model saw in training from drifting with the light on the line."""
    s = settings or CameraSettings()
    width, height, fps = s.width or width, s.height or height, int(s.fps or fps)
    props = [f"sensor-id={sensor_id}"]
    if s.exposure_us is not None:
        ns = int(s.exposure_us) * 1000
        props.append(f'exposuretimerange="{ns} {ns}"')
    if s.gain is not None:
        props.append(f'gainrange="{s.gain:g} {s.gain:g}"')
    if s.ae_lock or s.exposure_us is not None:
        props.append("aelock=true")
    if s.awb_lock:
        props.append("awblock=true")
    return (
        f"nvarguscamerasrc {' '.join(props)} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def gst_quote(value: str) -> str:
    """A GStreamer pipeline string value in double quotes (the launch syntax's quoting), \\ and " escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rtsp_pipeline(url: str, latency_ms: int = 100, jetson: Optional[bool] = None) -> str:
    """RTSP over TCP (no lost UDP packets smearing frames), the URL quoted (it may hold ?, & or spaces).

    On a Jetson the hardware decoder writes NVMM memory, which `videoconvert` cannot read: `nvvidconv`
    copies it out first. Elsewhere decodebin picks whatever decoder there is."""
    jetson = is_jetson() if jetson is None else jetson
    convert = "nvvidconv ! video/x-raw,format=BGRx ! videoconvert" if jetson else "videoconvert"
    return (
        f"rtspsrc location={gst_quote(url)} protocols=tcp latency={int(latency_ms)} ! decodebin ! "
        f"{convert} ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def _cv_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", cv2.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def capture_params(api: int, settings: CameraSettings, version: Optional[tuple[int, int]] = None) -> list[int]:
    """Open/read timeouts for the backends that take them at open (FFmpeg ≥ 4.5.2, GStreamer ≥ 4.6).

    A backend given a parameter it does not know refuses to open, so nothing is passed elsewhere; V4L2
    reads are bounded by OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT (seconds, read when OpenCV loads) instead."""
    version = version or _cv_version()
    if not hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
        return []
    supported = (api == cv2.CAP_FFMPEG and version >= (4, 5)) or (api == cv2.CAP_GSTREAMER and version >= (4, 6))
    if not supported:
        return []
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(settings.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(settings.read_timeout_s * 1000),
    ]


def _open(target: Union[int, str], api: int, settings: CameraSettings) -> CaptureLike:
    params = capture_params(api, settings)
    return cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)


def apply_v4l2_settings(cap: Any, s: CameraSettings) -> None:
    """FOURCC first (it decides which sizes and rates exist), then size, then rate; one-frame buffer."""
    if s.fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*s.fourcc))
    if s.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
    if s.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
    if s.fps:
        cap.set(cv2.CAP_PROP_FPS, s.fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)


def describe_capture(cap: Any) -> str:
    """What the driver actually gave (it may round a size or rate down), for the `opened` event."""
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)) if code > 0 else "?"
    return f"{w}×{h} @ {fps:.3g} fps {fourcc.strip()}"


def camera_opener(index: int, settings: Optional[CameraSettings] = None) -> Opener:
    s = settings or CameraSettings()

    def open_camera() -> CaptureLike:
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(index, api)
        if cap.isOpened():
            apply_v4l2_settings(cap, s)
        return cap

    return open_camera


def gstreamer_opener(pipeline: str, settings: Optional[CameraSettings] = None) -> Opener:
    if not opencv_has_gstreamer():
        raise SourceError(
            "this OpenCV build has no GStreamer support, which CSI cameras need: on a Jetson use "
            "the system OpenCV from JetPack (python3-opencv), not opencv-python from pip"
        )
    s = settings or CameraSettings()
    return lambda: _open(pipeline, cv2.CAP_GSTREAMER, s)


def rtsp_opener(url: str, settings: Optional[CameraSettings] = None, latency_ms: int = 100) -> tuple[Opener, str]:
    """GStreamer when OpenCV has it (newest frame only), else FFmpeg over TCP with a one-frame buffer."""
    s = settings or CameraSettings()
    if opencv_has_gstreamer():
        pipe = rtsp_pipeline(url, latency_ms)
        return (lambda: _open(pipe, cv2.CAP_GSTREAMER, s)), pipe
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")  # read at each open

    def open_ffmpeg() -> CaptureLike:
        cap = _open(url, cv2.CAP_FFMPEG, s)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return open_ffmpeg, f"FFmpeg (RTSP over TCP) {url}"


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
        frame_period_s: Optional[float] = None,
    ) -> None:
        self.name = name
        self.describe = describe or name
        self.frame_period_s = frame_period_s  # the source's frame interval, for the watchdog; None: unpaced
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
    camera_settings: CameraSettings = field(default_factory=CameraSettings)
    rtsp_latency_ms: int = 100

    def __post_init__(self) -> None:
        if self.reconnect is None:
            self.reconnect = ReconnectPolicy()
        given = [k for k in ("camera", "csi", "rtsp", "video", "images") if getattr(self, k) is not None]
        if len(given) != 1:
            raise SourceError(
                "give exactly one source: --camera N, --csi N, --rtsp URL, --video FILE or "
                f"--images DIR (got {', '.join('--' + g for g in given) or 'none'})"
            )


#: Frame rate assumed for a live camera that was not told one (the watchdog's period).
DEFAULT_LIVE_FPS = 30.0


def live_stream(
    opener: Opener, name: str, policy: ReconnectPolicy, describe: str = "", fps: Optional[float] = None
) -> FrameStream:
    return FrameStream(
        name, lambda stop: live_items(opener, name, policy, stop), threaded=True, describe=describe,
        frame_period_s=1.0 / (fps or DEFAULT_LIVE_FPS),
    )


def open_source(spec: SourceSpec) -> FrameStream:
    """Build the stream a spec names; files and folders are checked now, live sources on first read."""
    cam = spec.camera_settings
    if spec.camera is not None:
        asked = ", ".join(f"{k} {v}" for k, v in (("size", f"{cam.width}×{cam.height}" if cam.width or cam.height
                          else None), ("fps", cam.fps), ("fourcc", cam.fourcc)) if v)
        return live_stream(
            camera_opener(spec.camera, cam), f"camera{spec.camera}", spec.reconnect,
            f"V4L2 camera {spec.camera}" + (f" ({asked})" if asked else ""), cam.fps,
        )
    if spec.csi is not None:
        pipe = csi_pipeline(spec.csi, settings=cam)
        return live_stream(gstreamer_opener(pipe, cam), f"csi{spec.csi}", spec.reconnect, pipe, cam.fps or 30)
    if spec.rtsp is not None:
        opener, describe = rtsp_opener(spec.rtsp, cam, spec.rtsp_latency_ms)
        return live_stream(opener, "rtsp", spec.reconnect, describe, cam.fps)
    if spec.video is not None:
        path = Path(spec.video)
        if not path.is_file():
            raise SourceError(f"video file {path} does not exist")
        probe = cv2.VideoCapture(str(path))
        opened = probe.isOpened()
        fps = probe.get(cv2.CAP_PROP_FPS) or 0.0 if opened else 0.0
        probe.release()
        if not opened:
            raise SourceError(f"cannot open video {path}: is it a video file OpenCV (FFmpeg) can read?")
        return FrameStream(
            path.name,
            lambda stop: video_file_items(path, spec.loop, spec.realtime, stop),
            threaded=spec.realtime,
            describe=str(path),
            frame_period_s=(1.0 / fps) if spec.realtime and fps > 0 else None,
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
