"""Modbus TCP against a real pymodbus server on loopback: the ready coil follows judging, one NG pulse per NG
part, the last score and counts in holding registers, a PLC that is away never stops the line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("pymodbus", reason="pymodbus is not installed (pip install 'slsg[modbus]')")

import threading

from edge_runtime.backends import select_backend  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402
from edge_runtime.pipeline import Judge, run_pipeline  # noqa: E402
from edge_runtime.sinks.eventlog import EventLog  # noqa: E402
from edge_runtime.sinks.fanout import Fanout  # noqa: E402
from edge_runtime.sinks.modbus import (  # noqa: E402
    COIL_NG,
    COIL_READY,
    INVALID_SCORE,
    N_REGISTERS,
    REG_HEARTBEAT,
    REG_JUDGED,
    REG_NG_COUNT,
    REG_NO_DECISION,
    REG_SCORE,
    REG_STATUS,
    REG_THRESHOLD,
    REG_VERDICT,
    VERDICT_NO_DECISION,
    ModbusConfig,
    ModbusSink,
    parse_modbus_target,
    score_register,
)
from edge_runtime.sources.items import Dropped, Frame, SourceEvent
from edge_runtime.sources.spec import SourceSpec, open_source  # noqa: E402
from edge_runtime.sources.stream import SUPERSEDED, FrameStream
from edge_runtime.status import StatusTracker  # noqa: E402
from edge_runtime.tests.conftest import write_video  # noqa: E402
from edge_runtime.tests.loopback import RecordingServer, free_port, wait_until  # noqa: E402
from edge_runtime.tests.support import (
    gray,
    make_bundle,  # noqa: E402
)

COILS, REGS = 10, 40  # non-zero bases: the address map is honoured


@pytest.fixture
def plc():
    server = RecordingServer().start()
    yield server
    server.stop()


def test_ready_coil_ng_pulses_and_registers(plc: RecordingServer, tmp_path: Path) -> None:
    b = load_bundle(make_bundle(tmp_path / "m.slsg", nan_at=7))
    judge = Judge(select_backend(b, "onnx", threads=1), b.threshold.value)
    values = [20, 220, 30, 240, 100, 7]  # OK NG OK NG OK invalid(NG)
    log = EventLog(tmp_path / "e.jsonl")
    status = StatusTracker()
    sink = ModbusSink(ModbusConfig("127.0.0.1", plc.port, coil_base=COILS, register_base=REGS, pulse_ms=15,
                                   heartbeat_s=0.05), log.write, threshold=judge.threshold)
    fan = Fanout([log, status, sink])
    status.start()
    assert wait_until(lambda: plc.registers(REGS + REG_HEARTBEAT, 1)[0] >= 1)  # connected and alive
    assert plc.coil(COILS + COIL_READY) == 0  # nothing judged yet: not ready
    run_pipeline(open_source(SourceSpec(video=write_video(tmp_path / "v.avi", values))), judge, fan,
                 max_invalid_in_row=0)
    assert wait_until(lambda: plc.coil_values(COILS + COIL_NG).count(1) == 3, timeout_s=5)
    regs = plc.registers(REGS, N_REGISTERS)
    assert regs[REG_SCORE] == INVALID_SCORE and regs[REG_VERDICT] == 3  # never a low score for a NaN
    assert regs[REG_NG_COUNT] == 3 and regs[REG_JUDGED] == 6 and regs[REG_THRESHOLD] == 500
    ready_writes = plc.coil_values(COILS + COIL_READY)
    assert ready_writes[:2] == [0, 1]  # written 0 at connect (nothing judged), 1 once frames were judged
    assert regs[REG_STATUS] in (2, 0)  # degraded (the invalid output) or stopped (end of the video)
    status.stop("the run ended")  # the video ended: stopped
    fan.close(skip=(log,))
    log.close()
    assert plc.coil(COILS + COIL_READY) == 0 and plc.registers(REGS + REG_STATUS, 1) == [0]
    ng = plc.coil_values(COILS + COIL_NG)
    assert ng == [1, 0, 1, 0, 1, 0]  # one pulse per NG part, each back to 0
    scores = [w[2][REG_SCORE] for w in plc.writes if w[0] == "reg" and w[1] - plc.offset() == REGS]
    assert set(scores) <= {0, INVALID_SCORE} | {score_register(v / 255, 1000) for v in values[:-1]}


def test_ready_drops_when_the_source_stalls(plc: RecordingServer) -> None:
    status = StatusTracker()
    sink = ModbusSink(ModbusConfig("127.0.0.1", plc.port, pulse_ms=5, heartbeat_s=0.05), lambda r: None)
    fan = Fanout([status, sink])
    status.start()

    class J:
        invalid, ng, score, frame = False, False, 0.1, Frame(0, 0.0, None, "x", 0.0, 0.0)

        def light(self):
            return self

    fan.on_frame(J())
    assert wait_until(lambda: plc.coil(COIL_READY) == 1)
    fan.on_event(SourceEvent("stalled", "no frame for 1.2 s", time.time()))
    assert wait_until(lambda: plc.coil(COIL_READY) == 0)
    assert plc.registers(REG_STATUS, 1) == [3]
    fan.close()


def test_a_plc_that_is_away_is_reported_and_never_blocks() -> None:
    reports: list = []
    sink = ModbusSink(ModbusConfig("127.0.0.1", free_port(), timeout_s=0.2), reports.append)
    t0 = time.perf_counter()

    class J:
        invalid, ng, score = False, True, 0.9
        frame = type("F", (), {"id": 1})()

    for _ in range(100):
        sink.on_frame(J())
    assert time.perf_counter() - t0 < 0.5
    assert wait_until(lambda: [r for r in reports if r["event"] == "sink_error" and "cannot connect" in r["error"]])
    sink.close(timeout_s=0.5)


def test_targets_and_score_register() -> None:
    assert parse_modbus_target("10.0.0.5") == ("10.0.0.5", 502)
    assert parse_modbus_target("plc:5020") == ("plc", 5020)
    with pytest.raises(ValueError, match="HOST"):
        parse_modbus_target("plc:x")
    assert score_register(float("nan"), 1000) == INVALID_SCORE
    assert score_register(99.0, 1000) == INVALID_SCORE - 1 and score_register(-1, 1000) == 0


def test_a_frame_that_could_not_be_judged_is_no_decision_and_pulses_ng_never_the_last_verdict(
        plc: RecordingServer, tmp_path: Path) -> None:


    b = load_bundle(make_bundle(tmp_path / "m.slsg"))
    judge = Judge(select_backend(b, "onnx", threads=1), b.threshold.value)
    sink = ModbusSink(ModbusConfig("127.0.0.1", plc.port, coil_base=COILS, register_base=REGS, pulse_ms=15,
                                   heartbeat_s=0.05), lambda rec: None, threshold=judge.threshold)
    assert wait_until(lambda: plc.registers(REGS + REG_HEARTBEAT, 1)[0] >= 1)

    def produce(stop: threading.Event):  # OK, then a frame inference could not judge, then one superseded
        yield Frame(0, 1.0, gray(20, 64, 64), "mem", 0.0, 0.0)
        yield Dropped(1, 2.0, "inference failed: RuntimeError: device lost", "mem")
        yield Dropped(2, 3.0, SUPERSEDED, "mem")

    run_pipeline(FrameStream("mem", produce, threaded=False), judge, Fanout([sink]))
    assert wait_until(lambda: plc.registers(REGS + REG_VERDICT, 1) == [VERDICT_NO_DECISION])
    assert wait_until(lambda: plc.coil_values(COILS + COIL_NG) == [1, 0], timeout_s=5)  # the unjudged part: rejected
    regs = plc.registers(REGS, N_REGISTERS)
    assert regs[REG_SCORE] == INVALID_SCORE and regs[REG_NO_DECISION] == 1 and regs[REG_JUDGED] == 1
    sink.close()
