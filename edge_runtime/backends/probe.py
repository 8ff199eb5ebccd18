"""`--backend auto` on a CPU: measure the installed CPU backends on the bundle's own models, keep the fastest.

Which CPU path is fastest depends on the model and the CPU (measured: OpenVINO's bf16 halves FP32 time where the
CPU has bf16; ONNX Runtime's INT8 is slower than its FP32 on depthwise EfficientNet-Lite0), so no fixed rule can
be right. A short alternating probe decides, once per device: its result is cached under the bundle's
`engines/cpu-probe/` (like TensorRT engines: built here, never trusted from elsewhere) keyed by everything that
makes it valid — CPU, usable cores, threads, library versions and the sha256 of every model file it timed.
Only models the bundle ships are candidates, so only precisions that passed their accuracy gate can win.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from edge_runtime.backends.base import Backend, BackendError, close_backend
from edge_runtime.backends.faithful import check_frames, unfaithful
from edge_runtime.bundle import Bundle
from edge_runtime.preprocess import bench_frame, prepare
from edge_runtime.timing import Case, machine_facts, percentile, run_alternating

log = logging.getLogger(__name__)

PROBE_DIR = "cpu-probe"
#: The CPU backends `auto` may pick, in the order ties are broken (the portable, float one first).
CPU_CANDIDATES = ("onnx", "openvino", "openvino-bf16", "onnx-int8", "openvino-int8")
#: The candidates that run an INT8 file through a library's integer kernels: checked on this CPU first.
INT8_CANDIDATES = ("onnx-int8", "openvino-int8")
#: `SLSG_AUTO_PROBE=refresh` re-measures even when a valid cached result exists.
ENV = "SLSG_AUTO_PROBE"

Opener = Callable[[str], Backend]


@dataclass
class ProbeConfig:
    """How long the probe measures. Two warm-up and five timed alternating rounds tell apart backends that
    differ by ≥10 % on a quiet machine; a cached result makes the cost a one-off per device."""

    warmup: int = 2
    rounds: int = 5
    refresh: bool = False

    @classmethod
    def from_env(cls) -> ProbeConfig:
        return cls(refresh=os.environ.get(ENV, "") == "refresh")


@dataclass
class ProbeResult:
    """What `auto` measured and picked; written to the cache and into the run's start record."""

    picked: str
    why: str
    p50_ms: dict[str, float]
    skipped: dict[str, str]
    key: dict
    measured: str
    rounds: int
    cache: Optional[str] = None
    from_cache: bool = False
    candidates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _versions() -> dict:
    out = {}
    for module in ("onnxruntime", "openvino"):
        try:
            out[module] = str(__import__(module).__version__)
        except ImportError:
            continue
    return out


def device_key(bundle: Bundle, threads: Optional[int], candidates: list[str]) -> dict:
    """Everything that makes a measured pick valid on this device for this bundle."""

    facts = machine_facts(threads)
    files = bundle.manifest.files
    models = {p: files[bundle.models[p].relative_to(bundle.root).as_posix()].sha256 for p in sorted(bundle.models)}
    return {"cpu": facts["cpu"], "machine": facts["machine"], "cpus_usable": facts["cpus_usable"],
            "threads": threads, "versions": _versions(), "models": models, "candidates": list(candidates)}


def cache_path(bundle: Bundle, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return bundle.engines_dir / PROBE_DIR / f"{digest}.json"


def read_cached(path: Path, key: dict) -> Optional[ProbeResult]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = ProbeResult(**data)
    except (OSError, ValueError, TypeError):
        return None
    return result if result.key == key else None


def write_cached(path: Path, result: ProbeResult) -> Optional[Path]:
    """Atomically; a read-only bundle only costs the next start another probe (logged, not fatal)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".probe-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot cache the backend probe in %s (%s): the next start measures again", path, e)
        return None
    return path


def measure(openers: dict[str, Opener], size: tuple, cfg: ProbeConfig) -> tuple:
    """({name: p50 ms}, {name: why it could not be measured}) of each backend's `run` on one prepared frame,
    alternating round by round so a neighbour's load hits every candidate alike."""

    batch = prepare(bench_frame(size), size)[None]
    opened, skipped = {}, {}
    for name, open_one in openers.items():
        try:
            be = open_one(name)
            be.run(batch)
            opened[name] = be
        except BackendError as e:
            skipped[name] = str(e)
    cases = [Case(n, (lambda be=be: (be.run(batch), {})[1])) for n, be in opened.items()]
    timings = run_alternating(cases, cfg.warmup, max(1, cfg.rounds), progress=False) if cases else {}
    for be in opened.values():
        close_backend(be)
    return {n: percentile(t.end_to_end_ms, 50.0) for n, t in timings.items()}, skipped


def pick(p50: dict[str, float], order: list[str]) -> str:
    """The fastest; a tie within 1 % goes to the earlier candidate (float before int8, ORT before OpenVINO)."""
    best = min(p50.values())
    return next(n for n in order if n in p50 and p50[n] <= best * 1.01)


def _unfaithful(opener: Opener, name: str, frames) -> Optional[str]:
    """Why INT8 candidate `name` does not compute its file as the file says on this CPU (`backends.faithful`); None
    where it does, for the float candidates, and where it cannot be opened (then `measure` says why). A check that
    cannot run leaves the candidate out: FP32 stays."""
    if name not in INT8_CANDIDATES:
        return None
    try:
        backend = opener(name)
    except BackendError:
        return None
    try:
        return unfaithful(backend, frames)
    except Exception as e:  # noqa: BLE001 — onnxruntime and openvino raise their own types; never trust unchecked
        return f"its arithmetic on this CPU could not be checked ({type(e).__name__}: {e})"
    finally:
        close_backend(backend)


def probe(bundle: Bundle, candidates: list[str], threads: Optional[int], opener: Opener,
          cfg: Optional[ProbeConfig] = None) -> ProbeResult:
    """The cached pick for this device, or a fresh measurement (then cached)."""
    cfg = cfg or ProbeConfig.from_env()
    key = device_key(bundle, threads, candidates)
    path = cache_path(bundle, key)
    if not cfg.refresh:
        cached = read_cached(path, key)
        if cached is not None and cached.picked in candidates:
            cached.from_cache, cached.cache = True, str(path)
            return cached
    frames = check_frames(bundle)
    unfaithful_here = {n: why for n in candidates if (why := _unfaithful(opener, n, frames)) is not None}
    p50, skipped = measure({n: opener for n in candidates if n not in unfaithful_here}, bundle.size, cfg)
    skipped.update(unfaithful_here)
    if not p50:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise BackendError(f"no CPU backend could run this bundle: {reasons}")
    chosen = pick(p50, candidates)
    ranked = ", ".join(f"{n} {ms:.1f} ms" for n, ms in sorted(p50.items(), key=lambda kv: kv[1]))
    why = (f"fastest of {len(p50)} CPU backend(s) measured on this device ({cfg.rounds} alternating rounds, "
           f"p50 per frame: {ranked})")
    result = ProbeResult(chosen, why, p50, skipped, key, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         cfg.rounds, candidates=list(candidates))
    written = write_cached(path, result)
    result.cache = str(written) if written else None
    return result
