"""Triggered inspection: one trigger, one part, one answer that names it — and NO-DECISION, never silence, for a part
without a frame or with an answer past its deadline."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.cli import app
from edge_runtime.pipeline import NO_DECISION, Judge, run_pipeline
from edge_runtime.records import needs_answer
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sinks.modbus import VERDICT_NG, VERDICT_NO_DECISION, VERDICT_OK, ModbusConfig
from edge_runtime.sources.items import Frame
from edge_runtime.sources.spec import SourceSpec, open_source
from edge_runtime.tests.loopback import RecordingServer, wait_until
from edge_runtime.tests.support import gray, make_bundle, write_video
from edge_runtime.trigger.frames import FrameSlot, TriggerConfig, TriggerError, triggered_stream
from edge_runtime.trigger.modbus import COIL_RESULT_VALID, REG_PART, REG_RESULT, REG_TRIGGER, ModbusTrigger
from edge_runtime.trigger.requests import QueueTrigger

DARK, BRIGHT = 40, 220  # OK and NG for the brightness model


class Answers:
    """Every answer, in order, as the line would see it: (part, verdict, reason)."""

    def __init__(self) -> None:
        self.got: list[tuple] = []

    def on_frame(self, j) -> None:
        self.got.append((j.frame.part, j.verdict, None))

    def on_drop(self, d) -> None:
        if needs_answer(d):
            self.got.append((d.part, NO_DECISION, d.reason))

    def on_event(self, ev) -> None:
        pass


@pytest.fixture
def judge(tmp_path: Path) -> Judge:
    b = load_bundle(make_bundle(tmp_path / "m.slsg"))
    return Judge(select_backend(b, "onnx", threads=1), b.threshold.value)


def _run(video: Path, judge: Judge, parts: list[str | None], deadline_ms: float = 2000.0) -> list[tuple]:
    trigger = QueueTrigger()
    for part in parts:
        trigger.fire(part)
    trigger.close()
    answers = Answers()
    fan = Fanout([answers])
    run_pipeline(triggered_stream(open_source(SourceSpec(video=video)), trigger, deadline_ms), judge, fan)
    fan.close()  # every answer delivered
    return answers.got


def test_each_trigger_gets_the_next_frame_and_one_answer_that_names_its_part(judge, tmp_path):
    video = write_video(tmp_path / "line.mkv", [DARK, BRIGHT, DARK, BRIGHT])
    got = _run(video, judge, ["A-17", "A-18", None, "A-20"])
    assert got == [("A-17", "OK", None), ("A-18", "NG", None), ("3", "OK", None), ("A-20", "NG", None)]


def test_a_part_asked_for_after_the_source_ended_is_no_decision_for_that_part(judge, tmp_path):
    video = write_video(tmp_path / "short.mkv", [DARK, BRIGHT])
    got = _run(video, judge, ["p1", "p2", "p3", "p4"])
    assert [g[:2] for g in got] == [("p1", "OK"), ("p2", "NG"), ("p3", NO_DECISION), ("p4", NO_DECISION)]
    assert all("source has ended" in g[2] for g in got[2:])


def test_an_answer_ready_after_its_deadline_is_no_decision_not_a_late_verdict(judge, tmp_path):
    video = write_video(tmp_path / "line.mkv", [BRIGHT, DARK])
    real = judge.backend.run

    def slow(batch):
        time.sleep(0.15)
        return real(batch)

    judge.backend.run = slow
    got = _run(video, judge, ["late-1", "late-2"], deadline_ms=50)
    assert [g[:2] for g in got] == [("late-1", NO_DECISION), ("late-2", NO_DECISION)]
    assert "deadline" in got[0][2] and "it would have been NG" in got[0][2]


def test_a_live_part_gets_a_frame_captured_after_its_trigger_never_an_older_one():
    slot, stop = FrameSlot(live=True), threading.Event()
    slot.put(Frame(0, time.time(), gray(DARK), "cam", 0.0, time.perf_counter()), stop)  # before the trigger
    asked = time.perf_counter()
    assert slot.take(asked, asked + 0.05) == "no frame from the source within the deadline"
    threading.Timer(0.05, lambda: slot.put(Frame(1, time.time(), gray(BRIGHT), "cam", 0.0, time.perf_counter()),
                                           stop)).start()
    got = slot.take(asked, asked + 2.0)
    assert isinstance(got, Frame) and got.id == 1 and got.ready >= asked


def test_a_trigger_this_runtime_does_not_have_is_refused_with_the_ones_it_has():
    with pytest.raises(TriggerError, match="stdin"):
        TriggerConfig("plc")
    with pytest.raises(TriggerError, match="deadline"):
        TriggerConfig("stdin", 0)


def test_slsg_edge_run_takes_part_ids_from_stdin_and_logs_one_record_per_part(tmp_path):
    bundle = make_bundle(tmp_path / "m.slsg")
    video = write_video(tmp_path / "line.mkv", [BRIGHT, DARK])
    log = tmp_path / "events.jsonl"
    res = CliRunner().invoke(app, ["run", "-b", str(bundle), "--video", str(video), "--trigger", "stdin",
                                   "--log", str(log), "--quiet", "--backend", "onnx"], input="SN-1\n\nSN-3\n")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in log.read_text().splitlines()]
    parts = [(r["part"], r["verdict"]) for r in records if r.get("event") in ("frame", "dropped")]
    assert parts == [("SN-1", "NG"), ("2", "OK"), ("SN-3", NO_DECISION)]
    end = records[-1]
    assert end["event"] == "end"


def test_the_plc_triggers_over_modbus_and_reads_each_answer_for_its_own_part(judge, tmp_path):
    """A pymodbus server is the PLC: it writes PART then TRIGGER, waits for RESULT_VALID with its TRIGGER echoed,
    reads the verdict. A stale TRIGGER asks for nothing; a part after the video is NO-DECISION; RESULT_VALID drops
    before every new result, so no old verdict is read as a new part's."""
    pytest.importorskip("pymodbus", reason="pymodbus is not installed here (pip install 'slsg[modbus]')")

    plc = RecordingServer().start()
    try:
        def plc_writes(address: int, values: list[int]) -> None:
            plc.regs.setValues(address + plc.offset(), values)

        plc_writes(REG_TRIGGER, [99])  # left over from before the run
        errors: list[dict] = []
        trigger = ModbusTrigger(ModbusConfig("127.0.0.1", plc.port), errors.append, poll_ms=2)
        stream = triggered_stream(open_source(SourceSpec(video=write_video(tmp_path / "v.mkv", [DARK, BRIGHT, DARK]))),
                                  trigger, 3000)
        fan = Fanout([trigger])
        runner = threading.Thread(target=run_pipeline, args=(stream, judge, fan), daemon=True)
        runner.start()
        time.sleep(0.3)  # the runtime has read the stale value
        answers = []
        for seq, part in ((100, 70001), (101, 70002), (102, 0x12345), (103, 70004)):
            plc_writes(REG_PART, [part >> 16, part & 0xFFFF])
            plc_writes(REG_TRIGGER, [seq])
            wait_until(lambda s=seq: plc.coil(COIL_RESULT_VALID) == 1 and plc.registers(REG_RESULT, 1) == [s], 10)
            _, high, low, verdict, _ = plc.registers(REG_RESULT, 5)
            answers.append(((high << 16) | low, verdict))
        stream.stop()
        runner.join(10)
        fan.close()
    finally:
        plc.stop()
    assert answers == [(70001, VERDICT_OK), (70002, VERDICT_NG), (0x12345, VERDICT_OK), (70004, VERDICT_NO_DECISION)]
    assert plc.coil_values(COIL_RESULT_VALID) == [0] + [0, 1] * 4  # cleared at the start and on every trigger
    assert trigger.answered == 4 and not errors


@pytest.mark.parametrize("trigger, needs", [("modbus", "--modbus"), ("opcua", "--opcua")])
def test_a_plc_trigger_without_its_plc_connection_is_refused_before_anything_runs(tmp_path, trigger, needs):
    bundle = make_bundle(tmp_path / "m.slsg")
    video = write_video(tmp_path / "line.mkv", [DARK])
    res = CliRunner().invoke(app, ["run", "-b", str(bundle), "--video", str(video), "--trigger", trigger,
                                   "--log", str(tmp_path / "e.jsonl"), "--quiet"])
    assert res.exit_code == 2 and needs in res.output
