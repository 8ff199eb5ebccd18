"""The live dashboard (FPS, latency percentiles, OK/NG/dropped) and the summary table at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from edge_runtime.pipeline import STAGES, RunResult
from edge_runtime.run_counts import RunStats


def _ms(v: float) -> str:
    return "–" if v != v else f"{v:.2f}"  # NaN before the first frame


def live_table(stats: RunStats, title: str) -> Table:
    t = Table(title=title, show_header=True, header_style="bold")
    for col in ("status", "FPS", "p50 ms", "p99 ms", "OK", "NG", "invalid", "dropped", "last NG (heads)"):
        t.add_column(col, justify="right")
    t.add_row(
        stats.status if stats.status in ("running",) else f"[yellow]{stats.status}[/yellow]",
        f"{stats.fps():.1f}",
        _ms(stats.p("total", 50)),
        _ms(stats.p("total", 99)),
        str(stats.ok),
        f"[red]{stats.ng}[/red]" if stats.ng else "0",
        f"[red]{stats.invalid}[/red]" if stats.invalid else "0",
        str(stats.dropped),
        last_ng_text(stats.last_ng),
    )
    return t


def last_ng_text(last: dict) -> str:
    """"#41 0.812 (slsg 0.9, global 0.31)": the line sees which head flagged the part."""
    if not last:
        return "–"
    heads = ", ".join(f"{k} {v:.3g}" for k, v in last.get("heads", {}).items())
    return f"#{last['id']} {last['score']:.3g}" + (f" ({heads})" if heads else "")


class Dashboard:
    """A rich Live view refreshed a few times a second from its own thread; a no-op when quiet."""

    def __init__(self, stats: RunStats, title: str, quiet: bool, console: Console | None = None) -> None:
        self.stats = stats
        self.title = title
        self._live = (
            None
            if quiet
            else Live(
                get_renderable=lambda: live_table(stats, title),
                console=console or Console(stderr=True),
                refresh_per_second=4,
                transient=True,
            )
        )

    def __enter__(self) -> Dashboard:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()


def summary_table(stats: RunStats, result: RunResult, title: str = "slsg-edge run") -> Table:
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("frames", str(result.frames))
    t.add_row("OK / NG", f"{stats.ok} / {stats.ng}")
    t.add_row("NG: invalid output", str(stats.invalid))
    t.add_row("dropped (no decision)", str(stats.dropped))
    for reason, n in stats.drop_reasons.most_common():
        t.add_row(f"  {reason}", str(n))
    if stats.last_ng:
        t.add_row("last NG (heads)", last_ng_text(stats.last_ng))
    if result.alarm:
        t.add_row("[red]alarm[/red]", result.alarm)
    t.add_row("wall time s", f"{result.wall_s:.2f}")
    t.add_row("FPS (judged / wall)", f"{stats.judged / result.wall_s:.1f}" if result.wall_s > 0 else "–")
    for stage in STAGES:
        t.add_row(f"{stage} ms p50 / p99", f"{_ms(stats.p(stage, 50))} / {_ms(stats.p(stage, 99))}")
    return t


def summary_record(stats: RunStats, result: RunResult) -> dict:
    """The same numbers for the last line of the event log."""
    return {
        "event": "end",
        "frames": result.frames,
        "ok": stats.ok,
        "ng": stats.ng,
        "invalid": stats.invalid,
        "dropped": stats.dropped,
        "drop_reasons": dict(stats.drop_reasons),
        "wall_s": round(result.wall_s, 3),
        "stopped": result.stopped,
        "gave_up": result.gave_up,
        "alarm": result.alarm,
        "latency_ms": {
            s: {"p50": round(stats.p(s, 50), 3), "p99": round(stats.p(s, 99), 3)}
            for s in STAGES
            if len(stats.latencies[s])
        },
    }
