"""Running counts and latency percentiles for the dashboard, the summary and the benchmark."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

from edge_runtime.pipeline import STAGES, Judgement
from edge_runtime.timing import percentile

#: Percentiles are over the most recent frames, so memory stays bounded on a run of weeks.
WINDOW = 100_000


def percentile_ms(values: collections.deque | list, q: float) -> float:
    """`edge_runtime.timing.percentile`, or NaN when there is nothing yet (a dashboard before the first frame)."""
    return percentile(values, q) if len(values) else float("nan")


@dataclass
class RunStats:
    ok: int = 0
    ng: int = 0  # NG by score (invalid outputs are counted apart, though their verdict is NG too)
    invalid: int = 0  # NG because the model's output was not finite
    dropped: int = 0
    no_decision: int = 0  # dropped frames the line was answered NO-DECISION for (a superseded one is not)
    status: str = "stalled"
    last_ng: dict = field(default_factory=dict)  # score and per-head scores of the latest NG: which head flagged it
    drop_reasons: collections.Counter = field(default_factory=collections.Counter)
    latencies: dict[str, collections.deque] = field(
        default_factory=lambda: {s: collections.deque(maxlen=WINDOW) for s in STAGES}
    )
    started: float = field(default_factory=time.perf_counter)
    _recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=120))

    def add_frame(self, j: Judgement) -> None:
        if j.invalid:
            self.invalid += 1
        elif j.ng:
            self.ng += 1
            self.last_ng = {"id": j.frame.id, "score": j.score, "heads": dict(j.heads)}
        else:
            self.ok += 1
        for stage, ms in j.timings_ms.items():
            if stage in self.latencies:
                self.latencies[stage].append(ms)
        self._recent.append(time.perf_counter())

    def add_drop(self, reason: str, answered: bool = True) -> None:
        """`answered`: the line is told NO-DECISION for it (`records.needs_answer`)."""
        self.dropped += 1
        self.no_decision += int(answered)
        self.drop_reasons[reason_key(reason)] += 1

    @property
    def judged(self) -> int:
        return self.ok + self.ng + self.invalid

    def snapshot(self) -> dict:
        """Counts for a heartbeat (MQTT) or a status line."""
        return {"status": self.status, "judged": self.judged, "ok": self.ok, "ng": self.ng,
                "invalid": self.invalid, "dropped": self.dropped, "fps": round(self.fps(), 2)}

    def fps(self) -> float:
        """Judged frames per second over the last ~120 frames (live), or 0 before two frames."""
        r = self._recent
        if len(r) < 2 or r[-1] <= r[0]:
            return 0.0
        return (len(r) - 1) / (r[-1] - r[0])

    def mean_fps(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.judged / elapsed if elapsed > 0 else 0.0

    def p(self, stage: str, q: float) -> float:
        return percentile_ms(self.latencies[stage], q)


def reason_key(reason: str) -> str:
    """Group reasons for the summary (file names and error details vary)."""
    return reason.split(":")[0]
