"""Modbus TCP line output for PLCs (pymodbus client): a ready coil, an NG pulse, the last score.

slsg-edge is the Modbus *client*: it writes into the PLC (or a gateway) at `--modbus HOST:PORT`, unit
`--modbus-unit`. Addresses are offsets from `coil_base` and `register_base` (0-based protocol addresses):

| kind | address | meaning |
|---|---|---|
| coil | base + 0 | READY: 1 only while frames are judged (running or degraded); 0 when stalled or stopped |
| coil | base + 1 | NG: a pulse (`pulse_ms` on, then as long off) per NG part, invalid outputs and parts without a
verdict (NO-DECISION) included: a PLC that rejects on the pulse never passes a part nobody judged |
| holding | base + 0 | last score × `score_scale` (uint16, saturating; 65535 for an invalid output or no verdict) |
| holding | base + 1 | last verdict: 0 nothing judged yet, 1 OK, 2 NG, 3 NG because the output was invalid,
4 NO-DECISION (a frame that could not be judged: unreadable, inference failed, the run stopped) |
| holding | base + 2 | status: 0 stopped, 1 running, 2 degraded, 3 stalled |
| holding | base + 3 | heartbeat: +1 every `heartbeat_s` while slsg-edge runs (wraps at 65536) |
| holding | base + 4 | NG count (low 16 bits): exact even when NG parts come faster than pulses |
| holding | base + 5 | judged count (low 16 bits) |
| holding | base + 6 | threshold × `score_scale` |
| holding | base + 7 | NO-DECISION count (low 16 bits) |

A coil stays where it was last written when the box dies: the PLC must also watch the heartbeat register
and treat it as not ready when it stops changing for a few `heartbeat_s`. All I/O runs in the sink's own
thread, reconnecting with back-off; a PLC that is away is a `sink_error` line, never a stopped line.
"""

from __future__ import annotations

import collections
import inspect
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from edge_runtime.optional import require
from edge_runtime.records import needs_answer
from edge_runtime.sinks.fanout import ErrorReporter, Report
from edge_runtime.status import STATUS_CODES, STOPPED

COIL_READY, COIL_NG = 0, 1
REG_SCORE, REG_VERDICT, REG_STATUS, REG_HEARTBEAT, REG_NG_COUNT, REG_JUDGED, REG_THRESHOLD, REG_NO_DECISION = range(8)
N_REGISTERS = 8
VERDICT_NONE, VERDICT_OK, VERDICT_NG, VERDICT_INVALID, VERDICT_NO_DECISION = 0, 1, 2, 3, 4
INVALID_SCORE = 0xFFFF


@dataclass
class ModbusConfig:
    host: str
    port: int = 502
    unit: int = 1
    coil_base: int = 0
    register_base: int = 0
    pulse_ms: float = 200.0
    heartbeat_s: float = 1.0
    score_scale: float = 1000.0
    timeout_s: float = 1.0
    max_pulses: int = 1000  # NG pulses waiting; beyond, pulses are skipped (the NG count stays exact)


def parse_modbus_target(text: str) -> tuple[str, int]:
    """HOST[:PORT] → (host, port), port 502 by default."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "502")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--modbus must be HOST[:PORT] (e.g. 192.168.0.10:502), got {text!r}")
    return host, int(port)


def score_register(score: float, scale: float) -> int:
    if score != score or score in (float("inf"), float("-inf")):
        return INVALID_SCORE
    return int(min(max(round(score * scale), 0), INVALID_SCORE - 1))


def modbus_client_class() -> Any:
    return require("pymodbus.client", "modbus", "Modbus").ModbusTcpClient


class ModbusSink:
    """Keeps the PLC's view up to date from one I/O thread; the frame loop only changes numbers."""

    name = "modbus"

    def __init__(self, cfg: ModbusConfig, report: Report, threshold: float = 0.0) -> None:
        client_cls = modbus_client_class()
        self.cfg = cfg
        self._client = client_cls(cfg.host, port=cfg.port, timeout=cfg.timeout_s)
        params = inspect.signature(self._client.write_coil).parameters
        self._unit_kw = {"device_id" if "device_id" in params else "slave": cfg.unit}  # pymodbus ≥ 3.10 / older
        self._errors = ErrorReporter(self.name, report)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._regs = [0] * N_REGISTERS
        self._regs[REG_STATUS] = STATUS_CODES["stalled"]
        self._regs[REG_THRESHOLD] = score_register(threshold, cfg.score_scale)
        self._ready = False
        self._pulses: collections.deque = collections.deque()
        self.pulses_skipped = 0
        self.writes = 0
        self._written_regs: Optional[list[int]] = None
        self._written_ready: Optional[bool] = None
        self._thread = threading.Thread(target=self._loop, name="modbus", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ what the pipeline tells it

    def on_frame(self, j: Any) -> None:
        with self._lock:
            r = self._regs
            r[REG_SCORE] = score_register(j.score, self.cfg.score_scale)
            r[REG_VERDICT] = VERDICT_INVALID if j.invalid else (VERDICT_NG if j.ng else VERDICT_OK)
            r[REG_JUDGED] = (r[REG_JUDGED] + 1) & 0xFFFF
            if j.ng:
                r[REG_NG_COUNT] = (r[REG_NG_COUNT] + 1) & 0xFFFF
                self._queue_pulse(j.frame.id)
        self._wake.set()

    def on_drop(self, d: Any) -> None:
        """A frame that could not be judged is NO-DECISION, and pulses NG like a reject: never the last verdict
        left standing, never silence."""
        if not needs_answer(d):
            return
        with self._lock:
            r = self._regs
            r[REG_SCORE] = INVALID_SCORE
            r[REG_VERDICT] = VERDICT_NO_DECISION
            r[REG_NO_DECISION] = (r[REG_NO_DECISION] + 1) & 0xFFFF
            self._queue_pulse(d.id)
        self._wake.set()

    def _queue_pulse(self, frame_id: int) -> None:
        """Called under the lock."""
        if len(self._pulses) < self.cfg.max_pulses:
            self._pulses.append(frame_id)
        else:
            self.pulses_skipped += 1

    def on_event(self, ev: Any) -> None:
        pass

    def on_status(self, change: Any) -> None:
        with self._lock:
            self._regs[REG_STATUS] = STATUS_CODES.get(change.status, 0)
            self._ready = change.judging
        self._wake.set()

    # ------------------------------------------------------------------ the I/O thread

    def _write_coil(self, offset: int, value: bool) -> None:
        rr = self._client.write_coil(self.cfg.coil_base + offset, value, **self._unit_kw)
        if rr.isError():
            raise RuntimeError(f"PLC refused coil {self.cfg.coil_base + offset}: {rr}")
        self.writes += 1

    def _write_registers(self, values: list[int]) -> None:
        rr = self._client.write_registers(self.cfg.register_base, values, **self._unit_kw)
        if rr.isError():
            raise RuntimeError(f"PLC refused registers {self.cfg.register_base}…: {rr}")
        self.writes += 1

    def _connect(self) -> bool:
        if self._client.connected:
            return True
        if self._client.connect():
            self._written_regs = self._written_ready = None  # the PLC may have restarted: write everything
            self._errors.success()
            return True
        self._errors.failure(f"cannot connect to {self.cfg.host}:{self.cfg.port}")
        return False

    def _sync(self, force: bool = False) -> None:
        """Write what changed (or everything), ready coil last so it never claims more than is written."""
        with self._lock:
            regs, ready = list(self._regs), self._ready
        if force or regs != self._written_regs:
            self._write_registers(regs)
            self._written_regs = regs
        if force or ready != self._written_ready:
            self._write_coil(COIL_READY, ready)
            self._written_ready = ready

    def _pulse(self) -> None:
        with self._lock:
            if not self._pulses:
                return
            self._pulses.popleft()
        half = self.cfg.pulse_ms / 1000.0
        self._write_coil(COIL_NG, True)
        self._stop.wait(half)
        self._write_coil(COIL_NG, False)
        self._stop.wait(half)

    def _loop(self) -> None:
        backoff, next_beat = 0.5, time.monotonic()
        while not self._stop.is_set():
            try:
                if not self._connect():
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.5
                now = time.monotonic()
                beat = now >= next_beat
                if beat:
                    with self._lock:
                        self._regs[REG_HEARTBEAT] = (self._regs[REG_HEARTBEAT] + 1) & 0xFFFF
                    next_beat = now + self.cfg.heartbeat_s
                self._sync()
                self._pulse()
                self._errors.success()
            except Exception as e:  # a PLC that went away: report, reconnect, carry on
                self._errors.failure(f"{type(e).__name__}: {e}")
                self._client.close()
                self._stop.wait(backoff)
                continue
            self._wake.wait(max(0.0, min(0.05, next_beat - time.monotonic())))
            self._wake.clear()

    def close(self, timeout_s: float = 3.0) -> None:
        """Pulses still owed go out, then READY=0 and status stopped are written before disconnecting."""
        deadline = time.monotonic() + timeout_s
        while self._pulses and time.monotonic() < deadline and self._client.connected:
            time.sleep(0.01)
        with self._lock:
            self._ready = False
            self._regs[REG_STATUS] = STATUS_CODES[STOPPED]
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        try:
            if self._connect():
                self._sync(force=True)
        except Exception as e:
            self._errors.failure(f"close: {type(e).__name__}: {e}")
        self._client.close()
