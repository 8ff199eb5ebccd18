"""`slsg-edge run` as a plain function: open the outputs, bundle, backend and source, run, flush, summarise.

The outputs come first: a log or NG folder that cannot be created stops the run before anything is judged.
Sinks, in the order the fan-out calls them: counters, the NG saver's admission (so the frame line says what
happened to its image), the event log, the status, systemd; then, each in its own thread, webhook, MQTT,
Modbus and the window.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rich.console import Console

from edge_runtime.backends import select_backend
from edge_runtime.backends.base import model_of
from edge_runtime.backends.probe import ProbeConfig
from edge_runtime.bundle import load_bundle
from edge_runtime.dashboard import Dashboard, summary_record, summary_table
from edge_runtime.errors import SlsgError
from edge_runtime.pipeline import Judge, RunResult, Sink, run_pipeline
from edge_runtime.records import iso
from edge_runtime.run_counts import RunStats
from edge_runtime.sinks.counters import StatsSink
from edge_runtime.sinks.eventlog import EventLog, LogPolicy
from edge_runtime.sinks.evidence import EvidencePolicy, NgSaver
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sinks.modbus import ModbusConfig, ModbusSink  # pymodbus itself loads only when a sink connects
from edge_runtime.sinks.mqtt import MqttConfig, MqttSink  # so does paho
from edge_runtime.sinks.opcua import OpcUaConfig, OpcUaSink  # and asyncua when the server starts
from edge_runtime.sinks.systemd import SystemdNotifier
from edge_runtime.sinks.webhook import WebhookSink
from edge_runtime.sinks.window import WindowSink
from edge_runtime.sources.live import ReconnectPolicy
from edge_runtime.sources.spec import SourceSpec, blank_frame, open_source
from edge_runtime.sources.stream import FrameStream
from edge_runtime.status import StatusTracker
from edge_runtime.teach.follow import VersionFollower, reopen
from edge_runtime.teach.store import LineStore, line_folder
from edge_runtime.trigger.frames import TriggerConfig, triggered_stream
from edge_runtime.trigger.requests import QueueTrigger
from edge_runtime.watchdog import Watchdog, WatchdogConfig
from edge_runtime.web.page import LinePage
from edge_runtime.web.server import WebConfig


class OutputError(SlsgError, RuntimeError):
    """An output the run cannot do without (the NG folder) cannot be created."""


@dataclass
class RunConfig:
    bundle: Path
    source: SourceSpec
    log: Path = Path("events.jsonl")
    save_ng: Path | None = None  # NG frames kept here under `evidence`'s quota and free-space floor
    sensitivity: float = 1.0
    backend: str = "auto"
    threads: int | None = None
    reprobe: bool = False  # auto: measure the CPU backends again instead of trusting the cached pick
    max_frames: int | None = None
    webhook: str | None = None
    mqtt: MqttConfig | None = None
    modbus: ModbusConfig | None = None
    opcua: OpcUaConfig | None = None
    show: bool = False
    quiet: bool = False
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    log_policy: LogPolicy = field(default_factory=LogPolicy)
    evidence: EvidencePolicy = field(default_factory=EvidencePolicy)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    max_invalid_in_row: int = 10
    trigger: TriggerConfig | None = None  # one frame per part, asked for by a trigger; None: every frame
    web: WebConfig | None = None  # the line-side page; None: no page


class ConsoleNotes:
    """Warnings and alarms on stderr too (journalctl shows them), not only in the log."""

    inline = True
    name = "console"

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def on_event(self, ev) -> None:
        if ev.channel in ("warning", "alarm") and (ev.channel == "alarm" or not self.quiet):
            print(f"slsg-edge: {ev.channel}: {ev.detail}", file=sys.stderr)


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


def open_outputs(cfg: RunConfig) -> EventLog:
    """The event log; EventLogError (exit 2) when it cannot be created."""
    return EventLog(cfg.log, policy=cfg.log_policy)


def _saver(cfg: RunConfig, log: EventLog) -> NgSaver | None:
    if cfg.save_ng is None:
        return None
    try:
        return NgSaver(cfg.save_ng, cfg.evidence, log.write)
    except OSError as e:
        raise OutputError(
            f"cannot create the NG folder {cfg.save_ng}: {e.strerror or e}; choose another --save-ng "
            "or make it writable"
        ) from None


def _line_sinks(cfg: RunConfig, log: EventLog, stats: RunStats, threshold: float, trigger: object = None) -> list[Sink]:
    """The optional outputs to the line; each runs isolated in its own thread."""
    sinks: list[Sink] = []
    if cfg.webhook:
        sinks.append(WebhookSink(cfg.webhook, log.write))
    if cfg.mqtt is not None:
        sinks.append(MqttSink(cfg.mqtt, log.write, run_id=log.run_id, counts=stats.snapshot))
    if cfg.modbus is not None:
        sinks.append(ModbusSink(cfg.modbus, log.write, threshold=threshold))
    if cfg.opcua is not None:
        parts = trigger if isinstance(trigger, QueueTrigger) else None  # --trigger opcua: its Inspect method
        answer_s = (cfg.trigger.deadline_ms / 1e3 + 2.0) if cfg.trigger is not None else 5.0
        sinks.append(OpcUaSink(cfg.opcua, log.write, threshold=threshold, parts=parts, answer_timeout_s=answer_s))
    if cfg.show:
        sinks.append(WindowSink(log.write))
    return sinks


def open_store(cfg: RunConfig) -> LineStore | None:
    """The line's store of reviews and versions: made for a run with the page, used whenever it exists (a version
    made by a refit keeps running after a restart)."""
    if cfg.web is None and not line_folder(cfg.bundle).is_dir():
        return None
    return LineStore(cfg.bundle)


def _start_record(cfg: RunConfig, stream: FrameStream, backend, judge: Judge, bundle_root: Path) -> dict:
    return {
        "event": "start",
        "time": iso(time.time()),
        "bundle": str(bundle_root),
        "backend": backend.name,
        "providers": list(getattr(backend, "providers", [])),
        "source": stream.describe,
        "threshold": judge.threshold,
        "model": model_of(backend),
        "selection": getattr(backend, "selection", None),  # what auto picked and why (measured p50s), or "asked"
        "sensitivity": cfg.sensitivity,
        "input_size": list(judge.size),
        "version": judge.active.version,
        "frame_period_s": stream.frame_period_s,
    }


def execute(cfg: RunConfig, console: Console | None = None) -> tuple[RunResult, RunStats]:
    """Raises EventLogError / OutputError / BundleError / BackendError / SourceError before anything runs;
    then logs every frame. InferenceFailed / InvalidOutputAlarm come after the end record is written."""
    console = console or Console()
    cfg.source.reconnect = cfg.reconnect
    log = open_outputs(cfg)
    try:
        saver = _saver(cfg, log)
        store = open_store(cfg)
        bundle = store.open_current() if store is not None else load_bundle(cfg.bundle)
        backend = select_backend(bundle, cfg.backend, cfg.threads, ProbeConfig(refresh=cfg.reprobe or
                                                                               ProbeConfig.from_env().refresh))
        stream = open_source(cfg.source)
        trigger = cfg.trigger.open(cfg.modbus, cfg.opcua, log.write) if cfg.trigger is not None else None
        if trigger is not None:
            stream = triggered_stream(stream, trigger, cfg.trigger.deadline_ms)
    except Exception as e:
        log.close({"event": "error", "time": iso(time.time()), "error": f"{type(e).__name__}: {e}"})
        raise
    if cfg.source.csi is not None and not cfg.quiet:
        console.print(f"GStreamer pipeline: {stream.describe}", markup=False)
    threshold = bundle.threshold_for(model_of(backend)).value
    version = (bundle.manifest.lineage or {}).get("version", 1)  # the bundle opened, not a second read of the store
    judge = Judge(backend, threshold, cfg.sensitivity, map_norms=bundle.score_norms, version=version)
    backend.run(blank_frame(judge.size)[None])  # warm-up: the first real frame should not pay for it
    stats = RunStats()
    status = StatusTracker()
    notifier = SystemdNotifier()
    inline: list[Sink] = [StatsSink(stats)] + ([saver] if saver else []) + [log, status, notifier,
                                                                           ConsoleNotes(cfg.quiet)]
    page = None
    try:
        line = _line_sinks(cfg, log, stats, judge.threshold, trigger)
        if hasattr(trigger, "on_frame"):  # a trigger that answers each part itself (the Modbus handshake)
            line.append(trigger)
        if cfg.web is not None:
            page = LinePage.open(cfg.web, store, judge, stats, log.run_id, cfg.threads, cfg.trigger is not None)
            inline.append(page.metrics)
            line.append(page.view)
    except (ValueError, RuntimeError, OSError, SlsgError) as e:
        if saver:
            saver.close()
        log.close({"event": "error", "time": iso(time.time()), "error": str(e)})
        raise
    fan = Fanout(inline + line, report=log.write)
    follower = None
    if store is not None:
        follower = VersionFollower(store, judge, lambda b: reopen(b, backend, cfg.backend, cfg.threads), log.write,
                                   announce=page.view.note if page is not None else None).start()
    log.write(_start_record(cfg, stream, backend, judge, bundle.root))
    if page is not None:
        page.start()
        log.write({"event": "page", "time": iso(time.time()), "url": page.url})
        if not cfg.quiet:
            console.print(f"line-side page: {page.url}")
    status.start()
    notifier.ready(f"judging {stream.describe}")
    # parts come when the line sends them: a quiet line is not a stalled camera (a part without a frame is answered)
    watchdog = Watchdog.for_stream(stream, cfg.watchdog) if cfg.trigger is None else None
    result = RunResult()
    try:
        with stop_on_signals(stream.stop_event), Dashboard(stats, f"slsg-edge · {backend.name}", cfg.quiet):
            run_pipeline(
                stream, judge, fan, cfg.max_frames, max_invalid_in_row=cfg.max_invalid_in_row, watchdog=watchdog,
                result=result,
            )
    except Exception as e:
        result.alarm = result.alarm or f"{type(e).__name__}: {e}"
        raise
    finally:
        status.stop(f"alarm: {result.alarm}" if result.alarm else
                    "the source gave up" if result.gave_up else "the run ended")
        if follower is not None:
            follower.stop()
        if page is not None:
            page.stop()
        fan.close(skip=(log,))
        end = summary_record(stats, result)
        end["run_id"] = log.run_id
        end["stalls"] = watchdog.stalls if watchdog is not None else 0
        end["status_transitions"] = status.transitions
        end["sinks"] = fan.sink_counts()
        if saver:
            end["evidence"] = saver.counts()
        log.close(end)
    console.print(summary_table(stats, result))
    return result, stats
