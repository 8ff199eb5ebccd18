"""Live cameras: V4L2 cameras, Jetson CSI cameras through GStreamer, RTSP streams (GStreamer or FFmpeg), and the
settings asked of them."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import cv2

from edge_runtime.sources.capture import CaptureLike, Opener
from edge_runtime.sources.items import SourceError


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


def open_capture(target: Union[int, str], api: int, settings: CameraSettings) -> CaptureLike:
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
    return lambda: open_capture(pipeline, cv2.CAP_GSTREAMER, s)


def rtsp_opener(url: str, settings: Optional[CameraSettings] = None, latency_ms: int = 100) -> tuple[Opener, str]:
    """GStreamer when OpenCV has it (newest frame only), else FFmpeg over TCP with a one-frame buffer."""
    s = settings or CameraSettings()
    if opencv_has_gstreamer():
        pipe = rtsp_pipeline(url, latency_ms)
        return (lambda: open_capture(pipe, cv2.CAP_GSTREAMER, s)), pipe
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")  # read at each open

    def open_ffmpeg() -> CaptureLike:
        cap = open_capture(url, cv2.CAP_FFMPEG, s)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return open_ffmpeg, f"FFmpeg (RTSP over TCP) {url}"
