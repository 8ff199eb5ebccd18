"""GigE Vision and USB3 Vision (GenICam) cameras — the ones lines use (Basler, FLIR, Allied Vision, Hikrobot, …) —
through Aravis (PyGObject), with trigger mode, exposure, gain and pixel format.

The camera is read like any live source (`live.live_items`: reconnection with back-off, a lost camera reported and
reopened): `GenICamCapture` offers what `capture.CaptureLike` asks. Trigger modes: free-running (`off`), `software`
(each read fires the camera's software trigger and waits for that frame), or a hardware line (`line0`, `line1`, …:
the camera waits for its own trigger input, and each frame is a part; a quiet line is not a failure, a camera that
stops answering is). Mono and Bayer frames become BGR here, so the rest of the runtime sees the same frames as from
any camera. Aravis is optional: `apt install gir1.2-aravis-0.8` and `pip install 'slsg[genicam]'`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np

from edge_runtime.sources.capture import Opener
from edge_runtime.sources.items import SourceError

#: GenICam pixel format → the OpenCV conversion to BGR. OpenCV names a Bayer pattern by the second row's
#: second and third pixels, GenICam by the first row's first two: RG in GenICam is BG in OpenCV.
TO_BGR = {
    "Mono8": cv2.COLOR_GRAY2BGR,
    "BayerRG8": cv2.COLOR_BayerBG2BGR,
    "BayerBG8": cv2.COLOR_BayerRG2BGR,
    "BayerGR8": cv2.COLOR_BayerGB2BGR,
    "BayerGB8": cv2.COLOR_BayerGR2BGR,
    "RGB8": cv2.COLOR_RGB2BGR,
    "BGR8": None,
}
TRIGGER_MODES = ("off", "software", "line0", "line1", "line2", "line3")


@dataclass
class GenICamSettings:
    """What to ask of a GenICam camera; None leaves the camera's own setting."""

    camera: Optional[str] = None  # Aravis device ID ("Basler-21234567"), IP address, or None: the first one found
    trigger: str = "off"  # off | software | line0 … line3
    exposure_us: Optional[float] = None
    gain: Optional[float] = None
    pixel_format: Optional[str] = None  # one of TO_BGR's keys
    buffers: int = 4
    timeout_s: float = 2.0  # free-running and software trigger: a frame later than this is a failed read
    alive_every_s: float = 2.0  # hardware trigger: how often a quiet camera is asked whether it is still there

    def __post_init__(self) -> None:
        if self.trigger.lower() not in TRIGGER_MODES:
            raise SourceError(f"--genicam-trigger must be one of {', '.join(TRIGGER_MODES)}, got {self.trigger!r}")
        self.trigger = self.trigger.lower()
        if self.pixel_format is not None and self.pixel_format not in TO_BGR:
            raise SourceError(f"--pixel-format must be one of {', '.join(TO_BGR)}, got {self.pixel_format!r}")


def aravis() -> Any:
    """The Aravis bindings, or the error that says how to get them (the one place they are imported)."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as e:
        raise SourceError(f"GenICam cameras need Aravis 0.8 and PyGObject ({e}): apt install gir1.2-aravis-0.8 "
                          "and pip install 'slsg[genicam]'") from None
    return Aravis


def to_bgr(data: bytes, width: int, height: int, pixel_format: str) -> np.ndarray:
    """One frame's bytes as uint8 BGR H×W×3; 16-bit mono formats keep their top 8 bits."""
    if pixel_format in ("Mono10", "Mono12", "Mono16"):
        bits = int(pixel_format[4:])
        mono = np.frombuffer(data, np.uint16, width * height).reshape(height, width)
        return cv2.cvtColor((mono >> (bits - 8)).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if pixel_format not in TO_BGR:
        raise SourceError(f"pixel format {pixel_format} is not one slsg-edge reads: set the camera to one of "
                          f"{', '.join(TO_BGR)} (--pixel-format)")
    channels = 3 if pixel_format in ("RGB8", "BGR8") else 1
    image = np.frombuffer(data, np.uint8, width * height * channels).reshape(height, width, channels)
    code = TO_BGR[pixel_format]
    return image.copy() if code is None else cv2.cvtColor(image, code)


class GenICamCapture:
    """One opened GenICam camera, acquiring into a few buffers; `read` gives one BGR frame (a `CaptureLike`)."""

    def __init__(self, settings: GenICamSettings) -> None:
        self.settings = settings
        self._arv = aravis()
        self._camera = self._arv.Camera.new(settings.camera)
        self._apply(settings)
        self._format = self._camera.get_pixel_format_as_string()  # read once: a feature read is a network round trip
        self._stream = self._camera.create_stream(None, None)
        payload = self._camera.get_payload()
        for _ in range(max(2, settings.buffers)):
            self._stream.push_buffer(self._arv.Buffer.new_allocate(payload))
        self._lost = False  # set by Aravis' heartbeat thread when the camera stops answering (GigE Vision)
        device = self._camera.get_device()
        if hasattr(device, "connect"):
            device.connect("control-lost", lambda *_: setattr(self, "_lost", True))
        self._camera.start_acquisition()
        self._open = True

    def _apply(self, s: GenICamSettings) -> None:
        cam = self._camera
        if s.pixel_format is not None:
            cam.set_pixel_format_from_string(s.pixel_format)
        if s.trigger == "off":
            cam.clear_triggers()
        else:
            cam.set_trigger("Software" if s.trigger == "software" else f"Line{s.trigger[4:]}")
        if s.exposure_us is not None:
            if cam.is_exposure_auto_available():
                cam.set_exposure_time_auto(self._arv.Auto.OFF)
            cam.set_exposure_time(float(s.exposure_us))
        if s.gain is not None:
            if cam.is_gain_auto_available():
                cam.set_gain_auto(self._arv.Auto.OFF)
            cam.set_gain(float(s.gain))

    # ------------------------------------------------------------------ CaptureLike

    def isOpened(self) -> bool:  # noqa: N802 — OpenCV's spelling, as CaptureLike asks
        return self._open

    def read(self) -> tuple[bool, Any]:
        """One frame; raises OSError when the camera is gone (the live loop then reconnects)."""
        s = self.settings
        try:
            if s.trigger == "software":
                self._camera.software_trigger()
            deadline = time.perf_counter() + s.timeout_s
            while True:
                buffer = self._stream.timeout_pop_buffer(int(min(s.timeout_s, s.alive_every_s) * 1e6))
                if buffer is not None:
                    return self._frame(buffer)
                if self._lost:
                    raise OSError("the camera stopped answering (control lost)")
                if not s.trigger.startswith("line") and time.perf_counter() >= deadline:
                    return False, None  # free-running or software-triggered: a frame should have come
                # a hardware trigger line that stays quiet is no failure: no part came
        except SourceError:
            raise
        except Exception as e:  # GLib.Error: the camera stopped answering
            raise OSError(f"GenICam camera lost: {e}") from e

    def _frame(self, buffer: Any) -> tuple[bool, Any]:
        try:
            if buffer.get_status() != self._arv.BufferStatus.SUCCESS:
                return False, None
            image = to_bgr(bytes(buffer.get_data()), buffer.get_image_width(), buffer.get_image_height(),
                           self._format)
            return True, image
        finally:
            self._stream.push_buffer(buffer)

    def get(self, prop: int) -> float:
        _, _, width, height = self._camera.get_region()
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(width)
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(height)
        if prop == cv2.CAP_PROP_FPS:
            return float(self._camera.get_frame_rate()) if self.settings.trigger == "off" else 0.0
        return 0.0

    def release(self) -> None:
        if self._open:
            self._open = False
            self._camera.stop_acquisition()

    def describe(self) -> str:
        s = self.settings
        return (f"{self._camera.get_vendor_name()} {self._camera.get_model_name()} ({self._camera.get_device_id()}), "
                f"{self._format}, trigger {s.trigger}")


def genicam_opener(settings: GenICamSettings) -> Opener:
    """Opens the camera on each (re)connection; Aravis' errors (camera gone, refused) count as a failed open."""
    def open_camera() -> GenICamCapture:
        try:
            return GenICamCapture(settings)
        except SourceError:
            raise
        except Exception as e:  # GLib.Error from Aravis: the reconnection loop retries, with back-off
            raise OSError(f"GenICam camera {settings.camera or '(first found)'}: {e}") from e

    return open_camera
