"""Progress a log can read: a rich bar on a terminal, plain lines every ~10 s when stdout is not one.

Under nohup, systemd or `slsg train … > train.log` a live bar draws nothing until the job ends, so every long
command (train, pretrain, evaluate, export's calibration, bench) reports through this module, which prints
lines such as

    train: 120/7001 steps (2%) · loss 0.0812 · 2.31 steps/s · elapsed 0:00:52 · ETA 0:49:38

at most every `SLSG_PROGRESS_EVERY` seconds (default 10; 0 prints every update). Step loops announce their
start and end; other jobs print only once they have run for one interval, so quick ones stay silent.

`Progress` is rich's, extended: use it (and the columns re-exported here) wherever rich's would be used.
`ProgressLines` is the plain reporter on its own, for loops that never draw a bar (the latency runs).
numpy-free and torch-free: the runtime, calibration and the training side all import it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, Optional, TextIO  # noqa: UP035 — evaluated at run time on Python 3.8

from rich.progress import (  # noqa: F401 — re-exported so callers take every progress piece from here
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as _RichProgress
from rich.text import Text

INTERVAL_ENV = "SLSG_PROGRESS_EVERY"
DEFAULT_INTERVAL_S = 10.0


def progress_interval() -> float:
    """Seconds between plain progress lines: `SLSG_PROGRESS_EVERY` if it is a number ≥ 0, else 10."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL_S


def format_duration(seconds: Optional[float]) -> str:
    """h:mm:ss, or "?" when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _plural(unit: str) -> str:
    return unit if unit.endswith("s") else unit + "s"


class ProgressLines:
    """Plain progress lines for one job: `label: n/N units (p%) · fields · rate · elapsed · ETA`.

    The rate and ETA are measured from this reporter's creation (a resumed job counts from where it resumed).
    `announce=True` prints a line at the start and always one at the end; otherwise lines start once the job
    has run for one interval, and the end is reported only if something was.
    """

    def __init__(self, label: str, total: Optional[float] = None, *, completed: float = 0, unit: str = "item",
                 interval: Optional[float] = None, stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic, announce: bool = False, fields: str = "") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.interval = progress_interval() if interval is None else float(interval)
        self._stream = stream
        self.clock = clock
        self.announce = announce
        self.completed = completed
        self.fields = fields
        self._t0 = clock()
        self._start_completed = completed
        self._last_print: Optional[float] = None
        self._printed_state: Optional[float] = None
        self.closed = False
        if announce:
            self._emit(self._t0)
        else:
            self._last_print = self._t0  # quiet for the first interval

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def rate(self, now: Optional[float] = None) -> Optional[float]:
        elapsed = (self.clock() if now is None else now) - self._t0
        done = self.completed - self._start_completed
        return done / elapsed if elapsed > 0 and done > 0 else None

    def line(self, now: Optional[float] = None) -> str:
        now = self.clock() if now is None else now
        units = _plural(self.unit)
        if self.total:
            pct = 100.0 * self.completed / self.total
            head = f"{self.label}: {self.completed:g}/{self.total:g} {units} ({pct:.0f}%)"
        else:
            head = f"{self.label}: {self.completed:g} {units}"
        parts = [head]
        if self.fields:
            parts.append(self.fields)
        rate = self.rate(now)
        parts.append(f"{rate:.2f} {units}/s" if rate is not None else f"– {units}/s")
        parts.append(f"elapsed {format_duration(now - self._t0)}")
        if self.total:
            left = max(0.0, self.total - self.completed)
            eta = 0.0 if left == 0 else (left / rate if rate else None)
            parts.append(f"ETA {format_duration(eta)}")
        return " · ".join(parts)

    def _emit(self, now: float) -> None:
        stream = self.stream
        stream.write(self.line(now) + "\n")
        stream.flush()
        self._last_print = now
        self._printed_state = self.completed

    @property
    def printed_any(self) -> bool:
        return self._printed_state is not None

    def update(self, completed: Optional[float] = None, *, advance: float = 0, total: Optional[float] = None,
               fields: Optional[str] = None) -> bool:
        """Record progress; prints (and returns True) when an interval has passed or the job just finished."""
        if self.closed:
            return False
        if completed is not None:
            self.completed = completed
        self.completed += advance
        if total is not None:
            self.total = total
        if fields is not None:
            self.fields = fields
        now = self.clock()
        finished = bool(self.total) and self.completed >= self.total
        due = self._last_print is None or now - self._last_print >= self.interval
        if due or (finished and (self.announce or self.printed_any) and self._printed_state != self.completed):
            self._emit(now)
            return True
        return False

    def close(self) -> None:
        """The last line, if the job reported anything (or announced itself) and this state is not printed yet."""
        if not self.closed and (self.announce or self.printed_any) and self._printed_state != self.completed:
            self._emit(self.clock())
        self.closed = True


class RateColumn(ProgressColumn):
    """`2.31 steps/s` from rich's own speed estimate."""

    def __init__(self, unit: str = "item") -> None:
        super().__init__()
        self.units = _plural(unit)

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} {self.units}/s" if speed else f"– {self.units}/s", style="progress.data.speed")


def _is_plain(console) -> bool:
    return not console.is_terminal or console.is_dumb_terminal


class Progress(_RichProgress):
    """rich's Progress on a terminal; on anything else (a file, a pipe, the journal) no live display but a
    `ProgressLines` per task, fed by the same `add_task`/`update`/`advance` calls.

    `unit` names what is counted; `line_fields` are rich format strings on the task (as given to `TextColumn`,
    e.g. "loss {task.fields[loss]:.4f}") shown in the plain lines; `announce` makes every task report its start
    and end; `plain` forces one mode (None: decide by the console).
    """

    def __init__(self, *columns, unit: str = "item", line_fields: tuple = (), announce: bool = False,
                 interval: Optional[float] = None, plain: Optional[bool] = None, **kwargs) -> None:
        super().__init__(*columns, **kwargs)
        self.unit, self.line_fields, self.announce, self.interval = unit, tuple(line_fields), announce, interval
        self.plain = (not self.disable) and (_is_plain(self.console) if plain is None else plain)
        if self.plain:
            self.disable = True  # no live display: it would print nothing until the end
        self._lines: dict = {}

    def _fields_text(self, task) -> str:
        out = []
        for template in self.line_fields:
            try:
                out.append(Text.from_markup(template.format(task=task)).plain)
            except (KeyError, AttributeError, ValueError, TypeError, IndexError):
                continue
        return " · ".join(s for s in out if s)

    def add_task(self, description: str, start: bool = True, total: Optional[float] = 100.0, completed: int = 0,
                 visible: bool = True, **fields) -> TaskID:
        task_id = super().add_task(description, start=start, total=total, completed=completed, visible=visible,
                                   **fields)
        if self.plain:
            self._lines[task_id] = ProgressLines(
                Text.from_markup(description).plain, total, completed=completed, unit=self.unit,
                interval=self.interval, stream=self.console.file, clock=self.get_time, announce=self.announce,
                fields=self._fields_text(self._tasks[task_id]))
        return task_id

    def _report(self, task_id: TaskID) -> None:
        lines = self._lines.get(task_id)
        if lines is not None:
            task = self._tasks[task_id]
            lines.update(task.completed, total=task.total, fields=self._fields_text(task))

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._report(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def remove_task(self, task_id: TaskID) -> None:
        lines = self._lines.pop(task_id, None)
        if lines is not None:
            lines.close()
        super().remove_task(task_id)

    def stop(self) -> None:
        for lines in self._lines.values():
            lines.close()
        super().stop()
