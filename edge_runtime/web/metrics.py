"""Prometheus metrics of one run (`/metrics`), so a site that runs many lines watches them in its own Grafana.

An inline sink: a counter increment is a lock and an add, cheap enough for the frame loop, and an inline sink is
never skipped, so the counts are exact. Each run has its own registry (no process-wide state: tests and a restart
in the same process start from zero).
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from edge_runtime.pipeline import NO_DECISION, STAGES, VERDICTS, Judgement
from edge_runtime.records import needs_answer
from edge_runtime.run_counts import reason_key
from edge_runtime.sources.items import Dropped, SourceEvent
from edge_runtime.status import STATUSES

#: Latency buckets in seconds: a frame takes milliseconds on a GPU and up to a second on a small CPU.
BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class LineMetrics:
    """Frames and parts by verdict, drops by reason, latency per stage, status, threshold and bundle version."""

    inline = True
    name = "metrics"

    def __init__(self, threshold: Callable[[], float], version: Callable[[], int], triggered: bool = False) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("slsg_frames", "Frames judged or dropped, by verdict", ["verdict"], registry=r)
        self.parts = Counter("slsg_parts", "Parts answered (triggered inspection), by verdict", ["verdict"], registry=r)
        self.dropped = Counter("slsg_dropped", "Frames without a verdict, by reason", ["reason"], registry=r)
        self.latency = Histogram("slsg_latency_seconds", "Time per frame and stage", ["stage"], buckets=BUCKETS,
                                 registry=r)
        self.status = Gauge("slsg_status", "1 for the inspection's current status", ["status"], registry=r)
        threshold_gauge = Gauge("slsg_threshold", "The decision threshold in force", registry=r)
        threshold_gauge.set_function(threshold)
        version_gauge = Gauge("slsg_bundle_version", "The bundle version judging the frames", registry=r)
        version_gauge.set_function(lambda: float(version()))
        for s in STATUSES:
            self.status.labels(s).set(0)
        # each labelled series looked up once here, not per frame (a lookup takes the metric's lock)
        self._frames = {v: self.frames.labels(v) for v in VERDICTS}
        self._parts = {v: self.parts.labels(v) for v in VERDICTS} if triggered else {}
        self._stages = {s: self.latency.labels(s) for s in STAGES}

    def _part(self, verdict: str) -> None:
        (self._parts.get(verdict) or self.parts.labels(verdict)).inc()

    def on_frame(self, j: Judgement) -> None:
        self._frames[j.verdict].inc()
        if j.frame.part is not None:
            self._part(j.verdict)
        for stage, series in self._stages.items():
            ms = j.timings_ms.get(stage)
            if ms is not None:
                series.observe(ms / 1e3)

    def on_drop(self, d: Dropped) -> None:
        self.dropped.labels(reason_key(d.reason)).inc()
        if needs_answer(d):
            self._frames[NO_DECISION].inc()
            if d.part is not None:
                self._part(NO_DECISION)

    def on_event(self, ev: SourceEvent) -> None:
        pass

    def on_status(self, change: Any) -> None:
        for s in STATUSES:
            self.status.labels(s).set(1 if s == change.status else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
