"""The running line follows its store's current version: a refit or a rollback (from the page or the CLI, in this
process or another) changes `current.json`; the follower opens that version's model beside the running one, warms
it up, and hands it to the judge in one step. A version that cannot be opened is refused and the line keeps judging
with the one it has; the event log says either way."""

from __future__ import annotations

import io
import threading
import time
from typing import Callable, Optional

from rich.console import Console

from edge_runtime.backends import select_backend
from edge_runtime.backends.base import Backend, close_backend, model_of
from edge_runtime.backends.select import BACKENDS
from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.pipeline import Judge
from edge_runtime.records import iso
from edge_runtime.sources.spec import blank_frame
from edge_runtime.teach.store import LineStore
from edge_runtime.tensorrt import BuildSettings, build_engine  # loads TensorRT only when an engine is built

TENSORRT_PREFIX = "tensorrt-"  # what a TensorRT backend calls itself: tensorrt-fp16, tensorrt-int8


def reopen(bundle: Bundle, running: Backend, asked: str, threads: Optional[int] = None) -> Backend:
    """The backend the line runs, opened on another version of its bundle: the same backend by name — on TensorRT
    after building the version's engine here (minutes on a Jetson, while the line keeps judging with the running
    one) — or `asked` (`--backend`) when the running one is not a name `select_backend` takes."""
    name = str(getattr(running, "name", ""))
    if name.startswith(TENSORRT_PREFIX):
        precision = name[len(TENSORRT_PREFIX):]
        build_engine(bundle, BuildSettings(precision=precision), console=Console(file=io.StringIO()))
        return select_backend(bundle, f"trt-{precision}", threads)
    base = name.split(":")[0]
    return select_backend(bundle, base if base in BACKENDS and base != "auto" else asked, threads)


def switch_judge(judge: Judge, bundle: Bundle, backend: Backend, version: int) -> None:
    """Warm `backend` up (its first run pays for allocation), then let `judge` use it with `bundle`'s threshold."""
    backend.run(blank_frame(judge.size)[None])
    judge.use(backend, bundle.threshold_for(model_of(backend)).value, bundle.score_norms, version)


class VersionFollower:
    """Polls the store's current version (a file read every `poll_s`) in a daemon thread."""

    def __init__(self, store: LineStore, judge: Judge, open_backend: Callable[[Bundle], Backend],
                 report: Callable[[dict], None], poll_s: float = 0.5,
                 announce: Optional[Callable[[str, str], None]] = None) -> None:
        self.store, self.judge, self.open_backend, self.report = store, judge, open_backend, report
        self.poll_s, self.announce = poll_s, announce
        self.refused: Optional[int] = None  # a version that failed to open: not retried until current changes
        self._retired: Optional[Backend] = None  # the backend switched away from: closed at the next switch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="version-follower", daemon=True)

    def start(self) -> VersionFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._retire(None)

    def check(self) -> None:
        """Switch now if the current version is not the one judging (also what the thread does each poll)."""
        try:
            wanted = self.store.current
        except (OSError, ValueError) as e:
            self._say("version_refused", f"cannot read the line's current version: {e}", None)
            return
        running = self.judge.active.version
        if wanted == running or wanted == self.refused:
            return
        opened, previous = None, self.judge.backend
        try:
            bundle = load_bundle(self.store.version_path(wanted))
            opened = self.open_backend(bundle)
            switch_judge(self.judge, bundle, opened, wanted)
        except Exception as e:  # any failure keeps the running version: the line never stops for a refit
            close_backend(opened)
            self.refused = wanted
            self._say("version_refused", f"version {wanted} not used, still judging with version {running}: "
                      f"{type(e).__name__}: {e}", wanted)
            return
        self.refused = None
        self._retire(previous)
        self._say("version", f"now judging with version {wanted} (was {running}), threshold "
                  f"{self.judge.threshold:.5g}", wanted)

    def _retire(self, backend: Optional[Backend]) -> None:
        """Keep the backend just switched away from (a frame in flight may still be using it) and close the one
        retired before (a TensorRT engine holds GPU memory: a line refitted every day must not pile them up)."""
        close_backend(self._retired)
        self._retired = backend

    def _say(self, event: str, detail: str, version: Optional[int]) -> None:
        self.report({"event": event, "time": iso(time.time()), "version": version, "detail": detail})
        if self.announce is not None:
            self.announce(event, detail)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()
