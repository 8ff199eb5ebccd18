"""The run's counters as a sink: what the dashboard and the end-of-run summary read."""

from __future__ import annotations

from edge_runtime.pipeline import Judgement
from edge_runtime.records import needs_answer
from edge_runtime.run_counts import RunStats
from edge_runtime.sources.items import Dropped, SourceEvent


class StatsSink:
    """Feeds the dashboard and the summary (inline: counting is cheap and must not be skipped)."""

    inline = True
    name = "stats"

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def on_frame(self, j: Judgement) -> None:
        self.stats.add_frame(j)

    def on_drop(self, d: Dropped) -> None:
        self.stats.add_drop(d.reason, needs_answer(d))

    def on_event(self, ev: SourceEvent) -> None:
        pass

    def on_status(self, change) -> None:
        self.stats.status = change.status
