"""What `slsg-edge run` opens: exactly one source named by its options, checked now where it can be (files and
folders), on first read where it cannot (live sources)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.sources.cameras import (
    CameraSettings,
    camera_opener,
    csi_pipeline,
    gstreamer_opener,
    rtsp_opener,
)
from edge_runtime.sources.files import image_folder_items, video_file_items
from edge_runtime.sources.genicam import GenICamSettings, genicam_opener
from edge_runtime.sources.items import SourceError
from edge_runtime.sources.live import ReconnectPolicy, live_stream
from edge_runtime.sources.stream import FrameStream

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
    genicam: GenICamSettings | None = None  # a GigE Vision / USB3 Vision camera through Aravis

    def __post_init__(self) -> None:
        if self.reconnect is None:
            self.reconnect = ReconnectPolicy()
        given = [k for k in ("camera", "csi", "rtsp", "video", "images", "genicam") if getattr(self, k) is not None]
        if len(given) != 1:
            raise SourceError(
                "give exactly one source: --camera N, --csi N, --rtsp URL, --genicam ID, --video FILE or "
                f"--images DIR (got {', '.join('--' + g for g in given) or 'none'})"
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
    if spec.genicam is not None:
        g = spec.genicam
        return live_stream(genicam_opener(g), "genicam", spec.reconnect,
                           f"GenICam camera {g.camera or '(first found)'}, trigger {g.trigger}", cam.fps,
                           paced=not g.trigger.startswith("line"))
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
