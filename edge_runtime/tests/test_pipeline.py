"""Every frame comes out judged or dropped with a reason; verdicts follow threshold and sensitivity."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.overlay import heatmap_overlay
from edge_runtime.pipeline import Judge, run_pipeline
from edge_runtime.sinks.eventlog import EventLog
from edge_runtime.sources.items import Frame
from edge_runtime.sources.live import live_items
from edge_runtime.sources.spec import SourceSpec, open_source
from edge_runtime.sources.stream import FrameStream
from edge_runtime.tests.conftest import THRESHOLD, gray, write_video
from edge_runtime.tests.test_sources import FAST, scripted_opener


def _judge(bundle_dir: Path, sensitivity: float = 1.0, overlay_ng: bool = False) -> Judge:
    b = load_bundle(bundle_dir)
    return Judge(select_backend(b, "onnx", threads=1), b.threshold.value, sensitivity, overlay_ng=overlay_ng)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_every_video_frame_is_judged_with_known_verdicts(bundle_dir: Path, tmp_path: Path) -> None:
    values = [0, 60, 120, 140, 200, 255, 30]
    stream = open_source(SourceSpec(video=write_video(tmp_path / "v.avi", values)))
    log = EventLog(tmp_path / "events.jsonl")
    result = run_pipeline(stream, _judge(bundle_dir), [log])
    log.close()
    frames = [r for r in _lines(tmp_path / "events.jsonl") if r["event"] == "frame"]
    assert result.frames == result.judged == len(values) and result.dropped == 0
    assert [r["id"] for r in frames] == list(range(len(values)))
    assert [r["verdict"] for r in frames] == ["NG" if v / 255 > THRESHOLD else "OK" for v in values]
    np.testing.assert_allclose([r["score"] for r in frames], [v / 255 for v in values], atol=1e-5)
    assert set(frames[0]["latency_ms"]) == {
        "capture",
        "handoff",
        "preprocess",
        "inference",
        "postprocess",
        "total",
    }


def test_bad_frames_are_logged_and_skipped(bundle_dir: Path, tmp_path: Path) -> None:
    images = [
        gray(200),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((8, 8, 5), np.uint8),
        "not an array",
        np.zeros((8, 8), np.int32),
        np.full((30, 40), 10, np.uint16),
        gray(10),
    ]

    def produce(stop: threading.Event):
        for i, im in enumerate(images):
            yield Frame(i, 1.0 + i, im, f"f{i}", 0.0, 0.0)

    log = EventLog(tmp_path / "e.jsonl")
    result = run_pipeline(FrameStream("mem", produce, threaded=False), _judge(bundle_dir), [log])
    log.close()
    recs = {r["id"]: r for r in _lines(tmp_path / "e.jsonl") if r["event"] in ("frame", "dropped")}
    assert result.judged == 3 and result.dropped == 4 and sorted(recs) == list(range(7))
    assert recs[0]["verdict"] == "NG" and recs[5]["verdict"] == "OK" and recs[6]["verdict"] == "OK"
    for i, words in ((1, "empty"), (2, "shape"), (3, "str"), (4, "int32")):
        assert (
            recs[i]["event"] == "dropped"
            and recs[i]["reason"].startswith("bad frame")
            and words in recs[i]["reason"]
        )


def test_camera_failing_mid_stream_every_frame_logged(bundle_dir: Path, tmp_path: Path) -> None:
    opener = scripted_opener([[10, 200, "fail"], None, [220, "raise"], [30, 40, 250]])
    stream = FrameStream("cam", lambda stop: live_items(opener, "cam", FAST, stop), threaded=True)
    log = EventLog(tmp_path / "e.jsonl")
    result = run_pipeline(stream, _judge(bundle_dir), [log])
    log.close()
    recs = _lines(tmp_path / "e.jsonl")
    ids = sorted(r["id"] for r in recs if r["event"] in ("frame", "dropped"))
    assert ids == list(range(6)) and result.frames == 6 and result.gave_up
    kinds = [r["kind"] for r in recs if r["event"] == "source"]
    assert kinds.count("reconnected") == 2 and kinds[-1] == "gave_up"


def test_sensitivity_moves_the_verdict(bundle_dir: Path) -> None:
    frame = Frame(0, 0.0, gray(100), "x", 0.0, 0.0)  # score 0.392
    assert not _judge(bundle_dir).judge(frame).ng
    j = _judge(bundle_dir, sensitivity=1.5).judge(frame)
    assert j.ng and j.threshold == pytest.approx(THRESHOLD / 1.5)
    assert j.overlay is None and j.image is not None  # the overlay is the NG saver's job, off the loop
    inline = _judge(bundle_dir, sensitivity=1.5, overlay_ng=True).judge(frame)
    assert inline.overlay is not None and inline.overlay.shape == (48, 80, 3)


def test_max_frames_stops_and_accounts_for_the_rest(bundle_dir: Path, tmp_path: Path) -> None:
    stream = open_source(SourceSpec(video=write_video(tmp_path / "v.avi", [0] * 5), loop=True))
    result = run_pipeline(stream, _judge(bundle_dir), [], max_frames=7)
    assert result.frames == 7 and result.stopped


def test_overlay_colours_hot_pixels_red_and_keeps_the_size() -> None:
    m = np.zeros((4, 4), np.float32)
    m[:2] = 1.0
    out = heatmap_overlay(np.zeros((40, 40, 3), np.uint8), m, alpha=1.0)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    assert out[2, 20, 2] > 100 and out[2, 20, 0] < 50  # top: hot → red (BGR)
    assert out[37, 20, 0] > 100 and out[37, 20, 2] < 50  # bottom: calm → blue
