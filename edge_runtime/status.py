"""Whether inspection is happening, as one word the line can act on: running, degraded, stalled, stopped.

- `running`: frames are being judged and nothing went wrong lately.
- `degraded`: frames are being judged, but an invalid output, a failed inference, a bad frame or a camera
  reconnect happened within the last `recover_frames` judged frames.
- `stalled`: no frame is being judged: the source failed or is reconnecting, the watchdog saw no frame in
  time, or the run is starting and has judged nothing yet.
- `stopped`: the run ended (cleanly, by an alarm, or — sent by the MQTT broker as the last will — died).

`StatusTracker` is an inline sink: it hears every frame, drop and event, and announces each change to all
sinks through the fan-out (`on_status`), so MQTT, Modbus, systemd and the log all agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

RUNNING, DEGRADED, STALLED, STOPPED = "running", "degraded", "stalled", "stopped"
STATUSES = (RUNNING, DEGRADED, STALLED, STOPPED)
#: Status as a number, for the Modbus status register.
STATUS_CODES = {STOPPED: 0, RUNNING: 1, DEGRADED: 2, STALLED: 3}

#: Source events that mean no frame is coming now, and those that mean frames came back after trouble.
_STALLING = {"read_failed", "reconnecting", "stalled", "gave_up"}
#: Drop reasons that are trouble (superseded and stopped frames are the normal cost of a live camera).
_TROUBLE_DROPS = ("bad frame", "inference failed")


@dataclass
class StatusChange:
    status: str
    previous: Optional[str]
    reason: str
    at: float

    @property
    def judging(self) -> bool:
        """True while frames are being judged: what the Modbus ready coil shows."""
        return self.status in (RUNNING, DEGRADED)

    def record(self) -> dict:
        return {"event": "status", "status": self.status, "previous": self.previous, "reason": self.reason,
                "at": round(self.at, 6)}


class StatusTracker:
    """The status state machine; `recover_frames` good frames in a row turn degraded back into running."""

    inline = True
    name = "status"

    def __init__(self, recover_frames: int = 30) -> None:
        self.recover_frames = recover_frames
        self.current: Optional[StatusChange] = None
        self.transitions: list = []
        self._fan: Any = None
        self._good = 0
        self._judged_any = False

    def attach(self, fan: Any) -> None:
        self._fan = fan

    @property
    def status(self) -> Optional[str]:
        return self.current.status if self.current else None

    def set(self, status: str, reason: str) -> None:
        if self.current is not None and self.current.status == status:
            return
        change = StatusChange(status, self.status, reason, time.time())
        self.current = change
        self.transitions.append(status)
        if self._fan is not None:
            self._fan.on_status(change)

    def start(self) -> None:
        self.set(STALLED, "starting: no frame judged yet")

    def stop(self, reason: str) -> None:
        self.set(STOPPED, reason)

    # ------------------------------------------------------------------ sink

    def on_frame(self, j: Any) -> None:
        if j.invalid:
            self._trouble(f"invalid output on frame {j.frame.id}")
            return
        self._good += 1
        if self.status == STALLED:
            self.set(RUNNING if not self._judged_any else DEGRADED,
                     "judging frames" if not self._judged_any else f"frame {j.frame.id} judged after a stall")
            if self.status == DEGRADED:
                self._good = 0
        elif self.status == DEGRADED and self._good >= self.recover_frames:
            self.set(RUNNING, f"{self._good} frames judged without trouble")
        self._judged_any = True

    def on_drop(self, d: Any) -> None:
        if d.reason.startswith(_TROUBLE_DROPS):
            self._trouble(f"frame {d.id} dropped: {d.reason}")

    def on_event(self, ev: Any) -> None:
        if ev.kind in _STALLING:
            self._good = 0
            self.set(STALLED, f"{ev.kind}: {ev.detail}")
        elif ev.kind in ("end",):
            self.set(STOPPED, f"end of input: {ev.detail}")
        elif ev.channel == "alarm":
            self.set(STOPPED, f"alarm: {ev.detail}")

    def _trouble(self, reason: str) -> None:
        self._good = 0
        if self.status in (RUNNING, STALLED):
            self.set(DEGRADED, reason)
        self._judged_any = True
