"""Sources give every frame an id and a time, report what they drop, reconnect, and end cleanly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.pipeline import aspect_warning
from edge_runtime.sources.cameras import (
    CameraSettings,
    apply_v4l2_settings,
    capture_params,
    csi_pipeline,
    describe_capture,
    open_capture,
    rtsp_pipeline,
)
from edge_runtime.sources.items import Dropped, Frame, SourceError, SourceEvent
from edge_runtime.sources.live import ReconnectPolicy, live_items
from edge_runtime.sources.spec import SourceSpec, open_source
from edge_runtime.sources.stream import STOPPED, SUPERSEDED, FrameStream, LatestFrameBuffer
from edge_runtime.tests.conftest import gray, write_video

FAST = ReconnectPolicy(max_attempts=5, initial_delay_s=0.001, max_delay_s=0.004)


class FakeCamera:
    """A camera scripted as a list of steps: an int is a frame of that brightness, "fail" a failed read."""

    def __init__(self, steps: list, opened: bool = True) -> None:
        self.steps, self.opened = list(steps), opened

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self):
        if not self.steps:
            return False, None
        step = self.steps.pop(0)
        if step == "raise":
            raise OSError("USB reset")
        return (False, None) if step == "fail" else (True, gray(step))

    def release(self) -> None:
        self.opened = False

    def get(self, prop: int) -> float:
        return 0.0


def scripted_opener(sessions: list):
    """Each call opens the next scripted session; None stands for a camera that does not open."""
    queue = list(sessions)

    def opener():
        s = queue.pop(0) if queue else None
        return FakeCamera([], opened=False) if s is None else FakeCamera(s)

    return opener


def test_live_source_reconnects_and_every_frame_has_an_id() -> None:
    opener = scripted_opener([[10, 20, "fail"], None, None, ["raise"], [30, 40]])
    items = list(live_items(opener, "cam", FAST, threading.Event()))
    frames = [i for i in items if isinstance(i, Frame)]
    kinds = [i.kind for i in items if isinstance(i, SourceEvent)]
    assert [f.id for f in frames] == [0, 1, 2, 3]
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 30, 40]
    assert all(f.captured > 0 and f.capture_ms >= 0 for f in frames)
    assert kinds[0] == "opened" and "reconnected" in kinds and kinds.count("read_failed") == 3
    assert kinds[-1] == "gave_up"  # the last session ends; nothing comes back within the bound


def test_live_source_gives_up_after_bounded_attempts_with_backoff() -> None:
    policy = ReconnectPolicy(max_attempts=4, initial_delay_s=0.001, factor=2.0, max_delay_s=0.004)
    assert [policy.delay(a) for a in (1, 2, 3, 4)] == [0.001, 0.002, 0.004, 0.004]
    items = list(live_items(scripted_opener([]), "cam", policy, threading.Event()))
    assert [i.kind for i in items] == ["reconnecting"] * 4 + ["gave_up"]


def test_latest_frame_wins_and_the_superseded_one_is_reported() -> None:
    buf = LatestFrameBuffer()
    for i in range(3):
        buf.put(Frame(i, time.time(), None, "cam", 0.0, time.perf_counter()))
    got = [buf.get(0.01) for _ in range(3)]
    assert [(type(g).__name__, g.id) for g in got] == [("Dropped", 0), ("Dropped", 1), ("Frame", 2)]
    assert got[0].reason == SUPERSEDED
    buf.put(Frame(3, time.time(), None, "cam", 0.0, time.perf_counter()))
    assert [(d.id, d.reason) for d in buf.drain(STOPPED)] == [(3, STOPPED)]


def test_threaded_stream_accounts_for_every_frame_of_a_fast_camera() -> None:
    opener = scripted_opener([list(range(200))])
    stream = FrameStream("cam", lambda stop: live_items(opener, "cam", FAST, stop), threaded=True)
    seen: list[int] = []
    for item in stream:
        if isinstance(item, (Frame, Dropped)):
            seen.append(item.id)
            time.sleep(0.0005)  # a slow pipeline: some frames are superseded
    seen += [i.id for i in stream.close() if isinstance(i, Dropped)]
    assert sorted(seen) == list(range(200))


def test_image_folder_sorted_with_unreadable_file_dropped(tmp_path: Path) -> None:
    for name, v in (("b.png", 20), ("a.png", 10), ("d.png", 40)):
        cv2.imwrite(str(tmp_path / name), gray(v))
    (tmp_path / "c.png").write_bytes(b"not a png")
    items = [i for i in open_source(SourceSpec(images=tmp_path)) if not isinstance(i, SourceEvent)]
    assert [(type(i).__name__, i.id, i.origin) for i in items] == [
        ("Frame", 0, "a.png"),
        ("Frame", 1, "b.png"),
        ("Dropped", 2, "c.png"),
        ("Frame", 3, "d.png"),
    ]
    assert "cannot decode c.png" in items[2].reason


def test_video_file_reads_every_frame_and_loops(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.avi", [0, 50, 100, 150, 200])
    frames = [i for i in open_source(SourceSpec(video=path)) if isinstance(i, Frame)]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100, 150, 200]
    stream = open_source(SourceSpec(video=path, loop=True))
    looped = []
    for item in stream:
        if isinstance(item, Frame):
            looped.append(int(item.image[0, 0, 0]))
        if len(looped) == 12:
            break
    stream.close()
    assert looped == [0, 50, 100, 150, 200] * 2 + [0, 50]


def test_realtime_video_paces_at_file_fps(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mkv", list(range(0, 250, 25)), fps=100.0)
    t0 = time.perf_counter()
    items = list(open_source(SourceSpec(video=path, realtime=True)))
    assert time.perf_counter() - t0 >= 0.08  # 10 frames at 100 fps
    assert sorted(i.id for i in items if isinstance(i, (Frame, Dropped))) == list(range(10))


def test_bad_specs_and_missing_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="exactly one source"):
        SourceSpec(camera=0, video=tmp_path / "x.avi")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(SourceSpec(video=tmp_path / "missing.avi"))
    (tmp_path / "junk.avi").write_bytes(b"junk")
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(SourceSpec(video=tmp_path / "junk.avi"))
    with pytest.raises(SourceError, match="not a folder"):
        open_source(SourceSpec(images=tmp_path / "nope"))


def test_gstreamer_pipelines_keep_only_the_newest_frame() -> None:
    csi = csi_pipeline(1, 1280, 720, 60)
    assert csi.startswith("nvarguscamerasrc sensor-id=1 ") and "width=1280,height=720,framerate=60/1" in csi
    rtsp = rtsp_pipeline("rtsp://10.0.0.5/stream", jetson=False)
    for p in (csi, rtsp):
        assert p.endswith("appsink drop=true max-buffers=1 sync=false")
    assert 'rtspsrc location="rtsp://10.0.0.5/stream" protocols=tcp' in rtsp


def test_frames_of_odd_types_pass_through_for_the_pipeline_to_judge() -> None:
    opener = scripted_opener([[1]])
    first = next(i for i in live_items(opener, "cam", FAST, threading.Event()) if isinstance(i, Frame))
    assert isinstance(first.image, np.ndarray)


def test_rtsp_is_tcp_quoted_and_uses_nvvidconv_on_a_jetson() -> None:
    url = 'rtsp://cam.local:554/live?ch=1&sub="main"'
    jetson = rtsp_pipeline(url, latency_ms=50, jetson=True)
    assert 'location="rtsp://cam.local:554/live?ch=1&sub=\\"main\\""' in jetson
    assert "protocols=tcp latency=50" in jetson
    assert "decodebin ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert" in jetson  # NVMM out of the decoder
    assert "nvvidconv" not in rtsp_pipeline(url, jetson=False)


def test_csi_locks_exposure_gain_and_white_balance() -> None:
    p = csi_pipeline(0, settings=CameraSettings(width=1280, height=720, fps=60, exposure_us=2000, gain=2.0,
                                                awb_lock=True))
    assert p.startswith('nvarguscamerasrc sensor-id=0 exposuretimerange="2000000 2000000" gainrange="2 2" '
                        "aelock=true awblock=true ! ")
    assert "width=1280,height=720,framerate=60/1" in p
    assert "aelock" not in csi_pipeline(0) and "awblock" not in csi_pipeline(0)


def test_v4l2_settings_are_applied_fourcc_first_and_reported_as_given() -> None:


    class Recorder:
        def __init__(self) -> None:
            self.props: dict = {}
            self.order: list = []

        def set(self, prop: int, value: float) -> bool:
            self.order.append(prop)
            self.props[prop] = value
            return True

        def get(self, prop: int) -> float:
            return {cv2.CAP_PROP_FRAME_WIDTH: 1280, cv2.CAP_PROP_FRAME_HEIGHT: 720}.get(prop, self.props.get(prop, 0))

    cap = Recorder()
    apply_v4l2_settings(cap, CameraSettings(width=1920, height=1080, fps=30, fourcc="MJPG"))
    assert cap.order[:4] == [cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT,
                             cv2.CAP_PROP_FPS]
    assert cap.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert describe_capture(cap) == "1280×720 @ 30 fps MJPG"  # what the driver gave, not what was asked
    with pytest.raises(SourceError, match="4 characters"):
        CameraSettings(fourcc="MJPEG")


def test_open_and_read_timeouts_only_where_the_backend_takes_them() -> None:


    s = CameraSettings(open_timeout_s=3, read_timeout_s=1.5)
    expected = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 3000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 1500]
    assert capture_params(cv2.CAP_FFMPEG, s, (4, 8)) == expected
    assert capture_params(cv2.CAP_GSTREAMER, s, (4, 6)) == expected
    assert capture_params(cv2.CAP_GSTREAMER, s, (4, 5)) == []  # JetPack 5's OpenCV 4.5 would refuse to open
    assert capture_params(cv2.CAP_V4L2, s, (4, 8)) == []


def test_a_real_ffmpeg_open_accepts_the_timeouts(tmp_path: Path) -> None:


    path = write_video(tmp_path / "v.avi", [10, 20])
    cap = open_capture(str(path), cv2.CAP_FFMPEG, CameraSettings())
    assert cap.isOpened() and cap.read()[0]
    cap.release()


def test_aspect_warning_when_frames_do_not_have_the_model_aspect() -> None:
    assert aspect_warning((480, 640, 3), (256, 256)) is not None
    assert "640×480 (aspect 1.33)" in aspect_warning((480, 640, 3), (256, 256))
    assert aspect_warning((512, 1024, 3), (256, 512)) is None
    assert aspect_warning((720, 1280, 3), (288, 512)) is None  # 16:9 both
