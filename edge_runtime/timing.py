"""Latency measurement shared by `slsg bench` and `slsg-edge bench` (numpy only, never torch).

Backends are timed in one process, alternating round by round (the starting case rotates each round), so
a neighbour's burst of load on a shared CPU hits every backend alike and the ratios between them hold.
"""

from __future__ import annotations

import os
import platform
import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict

from edge_runtime.progress import ProgressLines
from edge_runtime.statistics import percentile as _percentile

PERCENTILES = (50.0, 90.0, 99.0)
#: Stage names a step may report; anything else it reports is kept too.
STAGES = ("pre", "infer", "post")


def percentile(samples: Sequence[float], q: float) -> float:
    """q in percent (99 means p99): `edge_runtime.statistics.percentile`; latencies need at least one sample."""

    values = list(samples)
    if not values:
        raise ValueError("no samples to take a percentile of")
    return _percentile(values, q)


@dataclass
class LatencyStats:
    """Summary of one series of per-iteration latencies, in milliseconds."""

    n: int
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    fps: float  # 1000 / mean: sequential frames per second at batch 1

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    values = [float(v) for v in samples_ms]
    if not values:
        raise ValueError("no latency samples to summarize")
    mean = sum(values) / len(values)
    p50, p90, p99 = (percentile(values, q) for q in PERCENTILES)
    return LatencyStats(len(values), mean, min(values), max(values), p50, p90, p99, 1000.0 / mean)


#: One iteration of a case: runs it once and returns the milliseconds of each stage it timed itself.
Step = Callable[[], Dict[str, float]]  # typing's: subscripted at run time, and 3.8 must import this


@dataclass
class Case:
    """A named thing to time. `step()` runs one frame; the runner times the whole call (end-to-end)."""

    name: str
    step: Step
    kind: str = "end-to-end"  # or "engine-only": the step is the bare engine call on a prepared input


@dataclass
class CaseTimings:
    name: str
    kind: str
    end_to_end_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    rss_after_warmup_mb: float = 0.0

    def add(self, total_ms: float, stages: dict[str, float]) -> None:
        self.end_to_end_ms.append(total_ms)
        for k, v in stages.items():
            self.stages_ms.setdefault(k, []).append(float(v))

    def summary(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "end_to_end": summarize(self.end_to_end_ms).to_dict(),
            "stages": {k: summarize(v).to_dict() for k, v in self.stages_ms.items()},
            "rss_after_warmup_mb": self.rss_after_warmup_mb,
        }


def alternating_order(names: Sequence[str], rounds: int, seed: int = 0) -> list[str]:
    """Every round runs every case once, each round in its own seeded shuffle.

    A fixed rotation put a backend's engine-only case right after its own end-to-end case in almost every round:
    its weights were still in cache, the end-to-end case's were not (another model ran before it), and the
    difference showed up as 15–18 % "runtime overhead" on OpenVINO INT8/bf16 that a standalone loop did not have.
    Shuffled, each case follows every other case about equally often."""
    rng = random.Random(seed)
    order: list[str] = []
    for _ in range(rounds):
        round_ = list(names)
        rng.shuffle(round_)
        order += round_
    return order


def run_alternating(
    cases: Sequence[Case], warmup: int, iterations: int, clock: Callable[[], float] = time.perf_counter,
    progress: bool = True,
) -> dict[str, CaseTimings]:
    """Warm every case up (alternating), then time `iterations` rounds of all cases (alternating).

    A run longer than ~10 s reports plain progress lines (`edge_runtime.progress`), between timed calls."""

    if iterations < 1:
        raise ValueError(f"iterations must be ≥ 1, got {iterations}")
    if len({c.name for c in cases}) != len(cases):
        raise ValueError("case names must be unique")
    by_name = {c.name: c for c in cases}
    out = {c.name: CaseTimings(c.name, c.kind) for c in cases}
    names = [c.name for c in cases]
    warm, timed_order = alternating_order(names, max(0, warmup)), alternating_order(names, iterations)
    lines = ProgressLines("timing", len(warm) + len(timed_order), unit="run") if progress else None
    for name in warm:
        by_name[name].step()
        if lines is not None:
            lines.update(advance=1)
    for name in names:
        out[name].rss_after_warmup_mb = current_rss_mb()
    for name in timed_order:
        t0 = clock()
        stages = by_name[name].step()
        out[name].add((clock() - t0) * 1e3, stages or {})
        if lines is not None:
            lines.update(advance=1)
    if lines is not None:
        lines.close()
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """(fn(), milliseconds it took)."""
    t0 = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - t0) * 1e3


def peak_rss_mb() -> float:
    """The process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def current_rss_mb() -> float:
    """Resident set size now; falls back to the peak where /proc is absent."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module)
        except ImportError:
            return None
    return str(getattr(mod, "__version__", "unknown"))


def machine_facts(threads: int | None, modules: Sequence[str] = ("numpy", "onnxruntime", "cv2")) -> dict:
    """What a reader needs to judge the numbers: CPU, cores usable, threads asked for, load, versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    versions = {m: _version(m) for m in modules}
    versions["python"] = platform.python_version()
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpus_logical": os.cpu_count(),
        "cpus_usable": usable,
        "threads": threads,
        "load_average_1_5_15": load,
        "versions": {k: v for k, v in versions.items() if v is not None},
    }



def take_turns_fairly() -> None:
    """Sessions that alternate must not leave spinning worker threads behind for the next one to fight.

    ONNX Runtime's workers spin after each run; in a benchmark that alternates several sessions that steals
    the next session's cores (measured: INT8 end-to-end 125 ms vs 93 ms engine-only in one run, 100 vs 98
    with spinning off). Call before opening the backends; a deployed runtime keeps the default.
    """
    os.environ.setdefault("SLSG_ORT_SPIN", "0")
