"""`slsg-edge run` as a plain function: open the bundle, backend, source and sinks, run, flush, summarise."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.dashboard import Dashboard, summary_record, summary_table
from edge_runtime.pipeline import Judge, RunResult, Sink, run_pipeline
from edge_runtime.sinks import EventLog, MqttSink, NgStore, StatsSink, WebhookSink, WindowSink, iso
from edge_runtime.sources import FrameStream, ReconnectPolicy, SourceSpec, blank_frame, open_source
from edge_runtime.stats import RunStats


@dataclass
class RunConfig:
    bundle: Path
    source: SourceSpec
    log: Path = Path("events.jsonl")
    save_ng: Path | None = None
    quota_mb: float = 1024.0
    sensitivity: float = 1.0
    backend: str = "auto"
    threads: int | None = None
    max_frames: int | None = None
    webhook: str | None = None
    mqtt: str | None = None
    show: bool = False
    quiet: bool = False
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM end the run cleanly: the loop stops, sinks flush, the exit status is 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _sinks(cfg: RunConfig, log: EventLog, stats: RunStats) -> list[Sink]:
    """Order matters: NG images are saved before the log line and the webhook, so both can name the files."""
    sinks: list[Sink] = [StatsSink(stats)]
    if cfg.save_ng is not None:
        sinks.append(NgStore(cfg.save_ng, cfg.quota_mb, log.write))
    if cfg.show:
        sinks.append(WindowSink(log.write))
    if cfg.webhook:
        sinks.append(WebhookSink(cfg.webhook, log.write))
    if cfg.mqtt:
        sinks.append(MqttSink(cfg.mqtt, log.write))
    sinks.append(log)
    return sinks


def _start_record(cfg: RunConfig, stream: FrameStream, backend, judge: Judge, bundle_root: Path) -> dict:
    return {
        "event": "start",
        "time": iso(time.time()),
        "bundle": str(bundle_root),
        "backend": backend.name,
        "providers": list(getattr(backend, "providers", [])),
        "source": stream.describe,
        "threshold": judge.threshold,
        "model": getattr(backend, "model", "fp32"),
        "sensitivity": cfg.sensitivity,
        "input_size": list(judge.size),
    }


def execute(cfg: RunConfig, console: Console | None = None) -> tuple[RunResult, RunStats]:
    """Raises BundleError / BackendError / SourceError before anything runs; then logs every frame."""
    console = console or Console()
    cfg.source.reconnect = cfg.reconnect
    bundle = load_bundle(cfg.bundle)
    backend = select_backend(bundle, cfg.backend, cfg.threads)
    stream = open_source(cfg.source)
    if cfg.source.csi is not None and not cfg.quiet:
        console.print(f"GStreamer pipeline: {stream.describe}", markup=False)
    threshold = bundle.threshold_for(getattr(backend, "model", "fp32")).value
    judge = Judge(
        backend, threshold, cfg.sensitivity, overlay_ng=cfg.save_ng is not None or cfg.show
    )
    backend.run(blank_frame(judge.size)[None])  # warm-up: the first real frame should not pay for it
    stats = RunStats()
    log = EventLog(cfg.log)
    sinks = _sinks(cfg, log, stats)
    log.write(_start_record(cfg, stream, backend, judge, bundle.root))
    result = RunResult()
    try:
        with stop_on_signals(stream.stop_event), Dashboard(stats, f"slsg-edge · {backend.name}", cfg.quiet):
            result = run_pipeline(stream, judge, sinks, cfg.max_frames)
    finally:
        for s in sinks:
            if s is not log and hasattr(s, "close"):
                s.close()
        log.write(summary_record(stats, result))
        log.close()
    console.print(summary_table(stats, result))
    return result, stats
