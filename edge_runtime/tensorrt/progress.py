"""Build progress: TensorRT ≥ 10 reports phases through IProgressMonitor (shown as rich progress bars);
older versions get a spinner with the elapsed time. The phase bookkeeping is pure and tested."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class PhaseTracker:
    """Maps TensorRT phase events onto progress tasks; thread-safe (TensorRT calls from its threads)."""

    def __init__(self, progress: Any):
        self._progress = progress
        self._tasks: dict[str, Any] = {}
        self._depth: dict[str, int] = {}
        self._lock = threading.Lock()
        self.cancel = False

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        with self._lock:
            depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._depth[phase_name] = depth
            label = "  " * depth + phase_name
            self._tasks[phase_name] = self._progress.add_task(label, total=max(1, num_steps))

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock:
            task = self._tasks.get(phase_name)
            if task is not None:
                self._progress.update(task, completed=step + 1)
            return not self.cancel

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            task = self._tasks.pop(phase_name, None)
            self._depth.pop(phase_name, None)
            if task is not None:
                self._progress.remove_task(task)


def make_progress_monitor(trt: Any, tracker: PhaseTracker) -> Any:
    """An IProgressMonitor subclass instance delegating to `tracker` (the class needs tensorrt)."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            tracker.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return tracker.step_complete(phase_name, step)

        def phase_finish(self, phase_name):
            tracker.phase_finish(phase_name)

    return _Monitor()


def phase_progress(console: Console | None = None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console, transient=True)


def spinner_progress(console: Console | None = None) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, transient=True)
