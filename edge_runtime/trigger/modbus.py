"""The PLC asks for each part over Modbus TCP and reads the answer back for that part (`--trigger modbus`).

slsg-edge stays the Modbus client of `--modbus HOST:PORT` (the same PLC, unit and bases as the line outputs of
`edge_runtime.sinks.modbus`, which keep their addresses). Addresses are offsets from `coil_base` / `register_base`:

| kind | address | written by | meaning |
|---|---|---|---|
| holding | base + 8 | PLC | TRIGGER: a new value (1…65535, e.g. +1 per part) asks for one part now |
| holding | base + 9, 10 | PLC | PART: the part number (high word, low word), written before TRIGGER |
| coil | base + 2 | slsg-edge | RESULT_VALID: 0 as soon as a new TRIGGER is seen; 1 once the result is that trigger's |
| holding | base + 11 | slsg-edge | RESULT_TRIGGER: the TRIGGER value the result answers |
| holding | base + 12, 13 | slsg-edge | RESULT_PART: the part number it answers (high, low) |
| holding | base + 14 | slsg-edge | RESULT_VERDICT: 1 OK, 2 NG, 3 NG (invalid output), 4 NO-DECISION |
| holding | base + 15 | slsg-edge | RESULT_SCORE: score × `score_scale` (65535: none) |

The handshake: the PLC writes PART, then TRIGGER, and waits for RESULT_VALID = 1 *and* RESULT_TRIGGER = its
TRIGGER before it reads RESULT_VERDICT. slsg-edge clears RESULT_VALID before anything else and writes the result
registers before setting it again, so an old verdict is never read as the new part's (RESULT_VALID is also cleared
when the run starts). Every trigger is answered
once: with the verdict, or NO-DECISION (no frame, a frame that could not be judged, an answer later than
`--deadline-ms`). A TRIGGER value already in the register when the run starts asks for nothing.
"""

from __future__ import annotations

import collections
import inspect
import threading
import time
from typing import Any, Iterator, Optional

from edge_runtime.records import needs_answer
from edge_runtime.sinks.fanout import ErrorReporter, Report
from edge_runtime.sinks.modbus import (
    INVALID_SCORE,
    VERDICT_INVALID,
    VERDICT_NG,
    VERDICT_NO_DECISION,
    VERDICT_OK,
    ModbusConfig,
    modbus_client_class,
    score_register,
)
from edge_runtime.trigger.requests import PartRequest

REG_TRIGGER, REG_PART = 8, 9  # PART: 9 (high), 10 (low)
REG_RESULT = 11  # RESULT_TRIGGER, RESULT_PART high, low, RESULT_VERDICT, RESULT_SCORE
COIL_RESULT_VALID = 2


class ModbusTrigger:
    """Both ends of the handshake: `requests` polls TRIGGER (a `Trigger`), `on_frame` / `on_drop` answer (a sink)."""

    name = "modbus"

    def __init__(self, cfg: ModbusConfig, report: Report, poll_ms: float = 5.0) -> None:
        self.cfg = cfg
        self.poll_s = poll_ms / 1e3
        self._client = modbus_client_class()(cfg.host, port=cfg.port, timeout=cfg.timeout_s)
        params = inspect.signature(self._client.write_coil).parameters
        self._unit_kw = {"device_id" if "device_id" in params else "slave": cfg.unit}
        self._errors = ErrorReporter(self.name, report)
        self._io = threading.Lock()  # one client, two threads: the poll and the answers
        self._pending: collections.deque[tuple[int, int]] = collections.deque()  # (trigger value, part number)
        self.answered = 0

    # ------------------------------------------------------------------ the trigger

    def requests(self, stop: threading.Event) -> Iterator[PartRequest]:
        last: Optional[int] = None
        while not stop.is_set():
            read = self._read_trigger()
            if read is None:
                stop.wait(min(1.0, 20 * self.poll_s))  # the PLC is away: try again, reported once per outage
                continue
            value, part = read
            if last is None:  # what the register held before the run asks for nothing, and no result stands
                last = value
                self._invalidate()
            elif value != last and value != 0:
                last = value
                self._invalidate()
                self._pending.append((value, part))
                yield PartRequest(str(part), value, time.perf_counter())
            stop.wait(self.poll_s)

    def _invalidate(self) -> None:
        self._write(lambda: self._client.write_coil(self.cfg.coil_base + COIL_RESULT_VALID, False, **self._unit_kw))

    def _read_trigger(self) -> Optional[tuple[int, int]]:
        with self._io:
            try:
                if not self._client.connected and not self._client.connect():
                    raise ConnectionError(f"cannot reach {self.cfg.host}:{self.cfg.port}")
                rr = self._client.read_holding_registers(self.cfg.register_base + REG_TRIGGER, count=3,
                                                         **self._unit_kw)
                if rr.isError():
                    raise ConnectionError(str(rr))
            except Exception as e:  # noqa: BLE001 — a PLC away or refusing costs polls, never the run
                self._errors.failure(f"{type(e).__name__}: {e}")
                self._client.close()
                return None
        self._errors.success()
        value, high, low = (int(v) for v in rr.registers)
        return value, (high << 16) | low

    # ------------------------------------------------------------------ the answers

    def on_frame(self, j: Any) -> None:
        if j.frame.part is None:
            return
        verdict = VERDICT_INVALID if j.invalid else (VERDICT_NG if j.ng else VERDICT_OK)
        self._answer(j.frame.part, verdict, score_register(j.score, self.cfg.score_scale))

    def on_drop(self, d: Any) -> None:
        if d.part is not None and needs_answer(d):
            self._answer(d.part, VERDICT_NO_DECISION, INVALID_SCORE)

    def on_event(self, ev: Any) -> None:
        pass

    def _answer(self, part: str, verdict: int, score: int) -> None:
        if not self._pending:
            self._errors.failure(f"an answer for part {part} that no trigger asked for")
            return
        value, number = self._pending.popleft()  # parts are answered in the order they were asked for
        base, regs = self.cfg.register_base, [value, number >> 16, number & 0xFFFF, verdict, score]

        def write() -> None:
            self._client.write_registers(base + REG_RESULT, regs, **self._unit_kw)
            self._client.write_coil(self.cfg.coil_base + COIL_RESULT_VALID, True, **self._unit_kw)

        if self._write(write):
            self.answered += 1

    def _write(self, action) -> bool:
        with self._io:
            try:
                if not self._client.connected and not self._client.connect():
                    raise ConnectionError(f"cannot reach {self.cfg.host}:{self.cfg.port}")
                action()
            except Exception as e:  # noqa: BLE001 — the PLC then times the part out on its side: no false OK
                self._errors.failure(f"{type(e).__name__}: {e}")
                self._client.close()
                return False
        self._errors.success()
        return True

    def close(self) -> None:
        with self._io:
            self._client.close()
