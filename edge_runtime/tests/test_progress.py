"""Progress reaches a log: plain lines about every 10 s (step, fields, rate, ETA) when the stream is not a terminal,
the rich bar (and no plain lines) when it is, silence for jobs shorter than one interval."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from edge_runtime.progress import (
    INTERVAL_ENV,
    Progress,
    ProgressLines,
    TextColumn,
    format_duration,
    progress_interval,
)
from edge_runtime.timing import Case, run_alternating


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_every_interval_with_step_rate_and_eta():
    clock, out = FakeClock(), io.StringIO()
    lines = ProgressLines("train", 40, unit="step", interval=10, stream=out, clock=clock, announce=True)
    for step in range(1, 41):
        clock.now += 1.0
        lines.update(step, fields=f"loss {1 / step:.3f}")
    lines.close()
    printed = out.getvalue().splitlines()
    assert [ln.split(" · ")[0] for ln in printed] == [
        "train: 0/40 steps (0%)", "train: 10/40 steps (25%)", "train: 20/40 steps (50%)",
        "train: 30/40 steps (75%)", "train: 40/40 steps (100%)"]
    assert printed[1] == "train: 10/40 steps (25%) · loss 0.100 · 1.00 steps/s · elapsed 0:00:10 · ETA 0:00:30"
    assert printed[-1].endswith("elapsed 0:00:40 · ETA 0:00:00")


def test_a_job_shorter_than_one_interval_prints_nothing_unless_it_announces_itself():
    clock, out = FakeClock(), io.StringIO()
    quiet = ProgressLines("evaluating", 5, interval=10, stream=out, clock=clock)
    for _ in range(5):
        clock.now += 1.0
        quiet.update(advance=1)
    quiet.close()
    assert out.getvalue() == ""
    slow = ProgressLines("evaluating", 30, interval=10, stream=out, clock=clock)
    for _ in range(30):
        clock.now += 1.0
        slow.update(advance=1)
    slow.close()
    assert [ln.split(" · ")[0] for ln in out.getvalue().splitlines()] == [
        "evaluating: 10/30 items (33%)", "evaluating: 20/30 items (67%)", "evaluating: 30/30 items (100%)"]


def test_a_resumed_job_measures_its_rate_from_where_it_resumed():
    clock, out = FakeClock(), io.StringIO()
    lines = ProgressLines("train", 1000, completed=900, unit="step", interval=0, stream=out, clock=clock)
    clock.now += 20.0
    lines.update(910)
    assert "0.50 steps/s" in out.getvalue() and "ETA 0:03:00" in out.getvalue()


def test_rich_progress_prints_plain_lines_with_its_fields_on_a_non_terminal_stream():
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, force_terminal=False)
    with Progress(TextColumn("{task.description}"), console=console, unit="step", interval=10, get_time=clock,
                  line_fields=("[bold]loss[/] {task.fields[loss]:.2f}",), announce=True) as bar:
        assert bar.plain
        task = bar.add_task("pretrain", total=20, loss=float("nan"))
        for step in range(1, 21):
            clock.now += 1.0
            bar.update(task, completed=step, loss=1.0 / step)
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("pretrain: 0/20 steps (0%) · loss nan")
    assert printed[1] == "pretrain: 10/20 steps (50%) · loss 0.10 · 1.00 steps/s · elapsed 0:00:10 · ETA 0:00:10"
    assert printed[-1].startswith("pretrain: 20/20 steps (100%) · loss 0.05") and len(printed) == 3


def test_on_a_terminal_the_bar_is_drawn_and_no_plain_lines_are_printed():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with Progress(TextColumn("{task.description}"), console=console, interval=0, announce=True,
                  auto_refresh=False) as bar:
        assert not bar.plain
        task = bar.add_task("calibrating", total=3)
        for _ in range(3):
            bar.advance(task)
    assert "calibrating" in out.getvalue() and "items (" not in out.getvalue()


def test_a_disabled_progress_prints_nothing_anywhere():
    out = io.StringIO()
    with Progress(console=Console(file=out), disable=True, interval=0, announce=True) as bar:
        task = bar.add_task("train", total=2)
        bar.update(task, completed=2)
    assert out.getvalue() == ""


def test_removed_tasks_report_their_end_once():
    out, clock = io.StringIO(), FakeClock()
    with Progress(console=Console(file=out), interval=1, get_time=clock) as bar:
        task = bar.add_task("test/good", total=4)
        for _ in range(3):
            clock.now += 1.0
            bar.advance(task)
        bar.remove_task(task)
    assert [ln.split(" · ")[0] for ln in out.getvalue().splitlines()] == [
        "test/good: 1/4 items (25%)", "test/good: 2/4 items (50%)", "test/good: 3/4 items (75%)"]


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert progress_interval() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        assert progress_interval() == 10.0
    monkeypatch.delenv(INTERVAL_ENV)
    assert progress_interval() == 10.0
    assert format_duration(3725) == "1:02:05" and format_duration(None) == "?"


def test_latency_runs_report_progress_lines_between_timed_calls(monkeypatch, capsys):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    run_alternating([Case("a", lambda: {}), Case("b", lambda: {})], warmup=1, iterations=2)
    printed = capsys.readouterr().out.splitlines()
    assert printed and printed[-1].startswith("timing: 6/6 runs (100%)") and "ETA 0:00:00" in printed[-1]
    run_alternating([Case("a", lambda: {})], warmup=0, iterations=1, progress=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("interval", ["10"])
def test_short_latency_runs_stay_silent(monkeypatch, capsys, interval):
    monkeypatch.setenv(INTERVAL_ENV, interval)
    run_alternating([Case("a", lambda: {})], warmup=2, iterations=5)
    assert capsys.readouterr().out == ""
