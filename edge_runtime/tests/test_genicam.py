"""GenICam cameras through Aravis, against Aravis' own fake GigE Vision camera on loopback (`arv-fake-gv-camera-0.8`,
Debian's aravis-tools): frames in software-trigger mode, settings applied, every frame BGR, a camera that disappears
reconnected; and the pixel-format conversions, which need no camera."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_runtime.cli import app
from edge_runtime.sources.genicam import GenICamSettings, aravis, to_bgr
from edge_runtime.sources.items import Frame, SourceError, SourceEvent
from edge_runtime.sources.live import ReconnectPolicy
from edge_runtime.sources.spec import SourceSpec, open_source
from edge_runtime.tests.support import make_bundle

FAKE_CAMERA = "arv-fake-gv-camera-0.8"


def _mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """A Bayer mosaic of `bgr` in GenICam's naming: the first row's first two colours (RG: red at (0, 0))."""
    index = {"R": 2, "G": 1, "B": 0}
    top, bottom = pattern[:2], {"RG": "GB", "BG": "GR", "GR": "BG", "GB": "RG"}[pattern]
    out = np.zeros(bgr.shape[:2], np.uint8)
    for (dy, row) in ((0, top), (1, bottom)):
        for dx, colour in enumerate(row):
            out[dy::2, dx::2] = bgr[dy::2, dx::2, index[colour]]
    return out


@pytest.mark.parametrize("pattern", ["RG", "BG", "GR", "GB"])
def test_every_bayer_pattern_becomes_the_colours_the_camera_saw(pattern):
    scene = np.zeros((8, 8, 3), np.uint8)
    scene[..., 2] = 200  # red, in BGR
    scene[..., 1] = 40
    got = to_bgr(_mosaic(scene, pattern).tobytes(), 8, 8, f"Bayer{pattern}8")
    centre = got[2:6, 2:6].reshape(-1, 3).mean(axis=0)
    assert centre[2] > 150 and centre[0] < 30, (pattern, centre)  # red stays red, never turns blue


def test_mono_and_rgb_frames_become_bgr_and_unknown_formats_are_refused():
    mono = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert (to_bgr(mono.tobytes(), 4, 3, "Mono8") == mono[..., None]).all()
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    assert (to_bgr(rgb.tobytes(), 2, 2, "RGB8")[..., 2] == 255).all()
    wide = (np.full((2, 2), 1023, np.uint16)).tobytes()
    assert (to_bgr(wide, 2, 2, "Mono10") == 255).all()
    with pytest.raises(SourceError, match="Mono8"):
        to_bgr(b"\0" * 8, 2, 2, "YUV422_8")
    with pytest.raises(SourceError, match="line0"):
        GenICamSettings(trigger="hardware")


def _aravis_or_skip():
    if shutil.which(FAKE_CAMERA) is None:
        pytest.skip(f"{FAKE_CAMERA} is not installed (Debian: apt install aravis-tools)")
    try:
        aravis()
    except SourceError as e:
        pytest.skip(str(e))


class FakeCamera:
    """Aravis' fake GigE Vision camera on 127.0.0.1, as its own process (GVCP and GVSP over UDP)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeCamera:
        self.proc = subprocess.Popen([FAKE_CAMERA, "-i", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def fake_camera():
    _aravis_or_skip()
    camera = FakeCamera().start()
    yield camera
    camera.stop()


def _items(stream, n_frames: int, timeout_s: float = 30.0) -> list:
    items, t0 = [], time.monotonic()
    for item in stream:
        items.append(item)
        if sum(isinstance(i, Frame) for i in items) >= n_frames or time.monotonic() - t0 > timeout_s:
            break
    stream.close()
    return items


def test_a_software_triggered_gige_camera_gives_bgr_frames_with_its_settings(fake_camera):
    settings = GenICamSettings("127.0.0.1", trigger="software", exposure_us=5000, gain=2.0)
    items = _items(open_source(SourceSpec(genicam=settings)), 3)
    frames = [i for i in items if isinstance(i, Frame)]
    assert len(frames) == 3 and all(f.image.shape == (512, 512, 3) and f.image.dtype == np.uint8 for f in frames)
    assert not (frames[0].image == frames[1].image).all()  # the fake camera's pattern moves: each is a new frame
    opened = next(i for i in items if isinstance(i, SourceEvent) and i.kind == "opened")
    assert "Fake" in opened.detail and "trigger software" in opened.detail


def test_a_camera_that_disappears_is_reported_and_reconnected(fake_camera):
    settings = GenICamSettings("127.0.0.1", trigger="software", timeout_s=1.0)
    stream = open_source(SourceSpec(genicam=settings, reconnect=ReconnectPolicy(max_attempts=20, initial_delay_s=0.2,
                                                                                max_delay_s=1.0)))
    seen: list = []

    def restart_later() -> None:
        while sum(isinstance(i, Frame) for i in seen) < 2:
            time.sleep(0.05)
        fake_camera.stop()
        time.sleep(2.0)
        fake_camera.start()

    threading.Thread(target=restart_later, daemon=True).start()
    t0 = time.monotonic()
    for item in stream:
        seen.append(item)
        kinds = [i.kind for i in seen if isinstance(i, SourceEvent)]
        if "reconnected" in kinds and isinstance(item, Frame) or time.monotonic() - t0 > 60:
            break
    stream.close()
    kinds = [i.kind for i in seen if isinstance(i, SourceEvent)]
    assert "read_failed" in kinds and "reconnecting" in kinds and "reconnected" in kinds, kinds
    assert isinstance(seen[-1], Frame) and seen[-1].image.shape[2] == 3


def test_bgr_conversion_matches_opencv_for_a_real_frame_size():
    frame = np.random.default_rng(0).integers(0, 255, (64, 96), dtype=np.uint8)
    assert (to_bgr(frame.tobytes(), 96, 64, "Mono8") == cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)).all()


def test_slsg_edge_run_judges_a_gige_camera_part_by_part(fake_camera, tmp_path):
    """`--genicam` with `--trigger stdin`: each part ID gets a frame captured after it, judged and logged."""



    log = tmp_path / "events.jsonl"
    res = CliRunner().invoke(app, ["run", "-b", str(make_bundle(tmp_path / "m.slsg")), "--genicam", "127.0.0.1",
                                   "--genicam-trigger", "software", "--trigger", "stdin", "--log", str(log),
                                   "--quiet", "--backend", "onnx"], input="P-1\nP-2\n")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in log.read_text().splitlines()]
    parts = [(r["part"], r["verdict"]) for r in records if r.get("event") == "frame"]
    assert [p for p, _ in parts] == ["P-1", "P-2"] and all(v in ("OK", "NG") for _, v in parts)
