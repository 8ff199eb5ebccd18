"""The line-side page of one run, put together: the view (a sink), the metrics (a sink), the actions and the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edge_runtime.pipeline import Judge
from edge_runtime.run_counts import RunStats
from edge_runtime.teach.store import LineStore
from edge_runtime.web.access import Access
from edge_runtime.web.metrics import LineMetrics
from edge_runtime.web.server import PageServer, WebConfig
from edge_runtime.web.teacher import Teacher
from edge_runtime.web.view import LineView, ViewConfig


@dataclass
class LinePage:
    view: LineView
    metrics: LineMetrics
    server: PageServer

    @classmethod
    def open(cls, cfg: WebConfig, store: LineStore, judge: Judge, stats: RunStats, run_id: str,
             threads: Optional[int] = None, triggered: bool = False, view_cfg: Optional[ViewConfig] = None) -> LinePage:
        """Bind the port (an error now, before the first frame, if it is taken or the guard is missing)."""
        access = Access.for_page(cfg.host, cfg.users)
        version = lambda: judge.active.version  # noqa: E731 — read at each request: a refit changes it
        threshold = lambda: judge.threshold  # noqa: E731
        view_cfg = view_cfg or ViewConfig(shifts=tuple(cfg.shifts))
        view = LineView(stats, store.folder / "rejects", run_id, view_cfg, version=version, threshold=threshold,
                        norms=lambda: judge.map_norms)
        metrics = LineMetrics(threshold, version, triggered)
        teacher = Teacher(store, view, version, threads)
        try:
            server = PageServer(cfg, access, view, metrics, teacher)
        except OSError as e:
            raise OSError(f"the page cannot listen on {cfg.host}:{cfg.port} ({e.strerror or e}): choose another "
                          "--web port") from None
        return cls(view, metrics, server)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
