"""Fail safe, never fail open: a non-finite output is never OK, is counted, and N in a row stop the run."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import NO_DECISION, InvalidOutputAlarm, Judge, non_finite, run_pipeline
from edge_runtime.records import json_line
from edge_runtime.sinks.eventlog import EventLog
from edge_runtime.sources.items import Dropped, Frame
from edge_runtime.sources.stream import FrameStream
from edge_runtime.tests.support import gray, make_bundle

NAN_AT = 7  # gray(7) frames make the bundle's model output NaN


@pytest.fixture
def nan_judge(tmp_path: Path) -> Judge:
    b = load_bundle(make_bundle(tmp_path / "nan.slsg", nan_at=NAN_AT))
    return Judge(select_backend(b, "onnx", threads=1), b.threshold.value)


def _stream(values: list) -> FrameStream:
    def produce(stop: threading.Event):
        for i, v in enumerate(values):
            if v == "drop":
                yield Dropped(i, 1.0 + i, "superseded by a newer frame", "mem")
            else:
                yield Frame(i, 1.0 + i, gray(v, 64, 64), "mem", 0.0, 0.0)

    return FrameStream("mem", produce, threaded=False)


def _lines(path: Path) -> list:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_nan_output_is_never_ok_and_every_line_is_strict_json(nan_judge: Judge, tmp_path: Path) -> None:
    j = nan_judge.judge(Frame(0, 0.0, gray(NAN_AT, 64, 64), "x", 0.0, 0.0))
    assert np.isnan(j.score) and j.verdict == "NG" and j.invalid and "not finite" in j.detail
    values = [10, NAN_AT, 200, NAN_AT, "drop", 30]
    log = EventLog(tmp_path / "e.jsonl")
    result = run_pipeline(_stream(values), nan_judge, [log])
    log.close()
    text = (tmp_path / "e.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    recs = {r["id"]: r for r in (json.loads(x) for x in text.splitlines()) if "id" in r}
    assert [recs[i]["verdict"] for i in range(6)] == ["OK", "NG", "NG", "NG", NO_DECISION, "OK"]
    for i in (1, 3):
        assert recs[i]["reason"] == "invalid output" and recs[i]["score"] is None
    assert "reason" not in recs[2]  # a real NG
    assert result.invalid == 2 and result.judged == 5 and result.dropped == 1


def test_invalid_outputs_in_a_row_raise_an_alarm_and_stop(nan_judge: Judge, tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.jsonl")
    with pytest.raises(InvalidOutputAlarm, match="3 frames in a row"):
        run_pipeline(_stream([10, NAN_AT, NAN_AT, 20, NAN_AT, NAN_AT, NAN_AT, 30, 40]), nan_judge, [log],
                     max_invalid_in_row=3)
    log.close()
    recs = _lines(tmp_path / "e.jsonl")
    frames = [r for r in recs if r["event"] == "frame"]
    assert len(frames) == 7  # a good frame resets the run of invalid ones; the 3rd in a row stops it
    assert recs[-1]["event"] == "alarm" and recs[-1]["kind"] == "invalid_output"


def test_zero_means_never_stop_but_still_count(nan_judge: Judge) -> None:
    result = run_pipeline(_stream([NAN_AT] * 12), nan_judge, [], max_invalid_in_row=0)
    assert result.invalid == 12 and result.alarm is None


def test_non_finite_finds_score_heads_and_map() -> None:
    good = np.zeros((4, 4), np.float32)
    assert non_finite(0.3, {"slsg": 0.2}, good) is None
    bad_map = good.copy()
    bad_map[0, :2] = np.inf
    assert non_finite(0.3, {}, bad_map) == "2 map values not finite"
    assert "global score nan" in non_finite(0.3, {"global": float("nan")}, good)
    assert "score inf" in non_finite(float("inf"), {}, good)


def test_json_line_never_writes_nan() -> None:
    line = json_line({"a": float("nan"), "b": {"c": float("-inf"), "d": 1.5}, "e": [1.0, float("inf")]})
    rec = json.loads(line)
    assert rec["a"] is None and rec["b"] == {"c": None, "d": 1.5} and rec["e"] == [1.0, None]
    assert sorted(rec["non_finite"]) == ["a", "b.c", "e[1]"]
