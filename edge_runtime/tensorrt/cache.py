"""The engine cache under `BUNDLE/engines/`: engine files, their sidecars, and which of them fit here.

Each engine has a sidecar JSON with its full `EngineKey`, the `EngineRequest` that made it, the build
record and the engine's own sha256. An engine is trusted only when the key this code would build today
(for this GPU, TensorRT and bundle) equals the sidecar's and the file still hashes to the sidecar's value;
anything else (stale, foreign, damaged, half-written) is a miss with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from .cuda import DeviceInfo, query_device
from .errors import TensorRTError
from .recipe import BundleLike, EngineKey, EngineRequest, Recipe, gpu_slug, make_recipe
from .versions import ApiPlan, api_plan, load_tensorrt, tensorrt_available

ENGINES_DIR = "engines"
SIDECAR_SCHEMA = "slsg.engine"
SIDECAR_VERSION = 3   # 3: the key holds the workspace and the plugin's kernel sources, Triton and tiles


def engines_dir(bundle_root: Path) -> Path:
    return Path(bundle_root) / ENGINES_DIR


def engine_path(bundle_root: Path, key: EngineKey) -> Path:
    return engines_dir(bundle_root) / f"{key.file_stem()}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def _version_slug(version: str) -> str:
    return re.sub(r"[^0-9a-z.]+", "-", version.lower()).strip("-")


def timing_cache_path(bundle_root: Path, device: DeviceInfo, tensorrt_version: str) -> Path:
    """One timing cache per GPU model and full TensorRT version (it is invalid elsewhere)."""
    return engines_dir(bundle_root) / (f"timing-{gpu_slug(device.name)}-sm{device.sm}-{device.sm_count}sm-"
                                       f"trt{_version_slug(tensorrt_version)}.cache")


def calibration_cache_path(bundle_root: Path, key: EngineKey, opt_batch: int) -> Path:
    """The legacy calibrator's scales depend on the ONNX bytes, the TensorRT version and the batch fed."""
    return engines_dir(bundle_root) / (f"calibration-{key.onnx_sha256[:8]}-trt{_version_slug(key.tensorrt_version)}"
                                       f"-b{opt_batch}.cache")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write beside the target then rename, so a crash or a full disk never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_sidecar(engine: Path) -> dict:
    """The sidecar as a dict; ValueError when it is missing, unreadable or not ours."""
    side = sidecar_path(engine)
    try:
        data = json.loads(side.read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"no sidecar {side.name}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable sidecar {side.name}: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA:
        raise ValueError(f"{side.name} is not an slsg engine sidecar")
    if data.get("schema_version") != SIDECAR_VERSION:
        raise ValueError(f"{side.name} has sidecar version {data.get('schema_version')}, "
                         f"expected {SIDECAR_VERSION} (written by another slsg)")
    return data


def store_engine(bundle_root: Path, recipe: Recipe, engine_bytes: bytes, build: dict[str, Any]) -> Path:
    """Save an engine and its sidecar (engine first: a sidecar never points at a missing engine)."""
    path = engine_path(bundle_root, recipe.key)
    data = bytes(engine_bytes)
    atomic_write(path, data)
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        "schema_version": SIDECAR_VERSION,
        "key": recipe.key.to_dict(),
        "request": recipe.request.to_dict(),
        "engine": {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
        "build": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **build},
    }
    atomic_write(sidecar_path(path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return path


@dataclass(frozen=True)
class CacheLookup:
    engine_path: Optional[Path]
    reason: str                  # why it is a hit or a miss, one line, for the user

    @property
    def hit(self) -> bool:
        return self.engine_path is not None


def _check(path: Path, data: dict, key: EngineKey) -> CacheLookup:
    try:
        recorded = EngineKey.from_dict(data["key"])
        want_sha = str(data["engine"]["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        return CacheLookup(None, f"cached engine {path.name} is not trusted: unreadable key ({exc})")
    diff = key.mismatches(recorded)
    if diff:
        return CacheLookup(None, f"cached engine {path.name} was built for another target: {'; '.join(diff)}")
    if sha256_file(path) != want_sha:
        return CacheLookup(None, f"cached engine {path.name} is damaged (sha256 differs from its sidecar)")
    return CacheLookup(path, f"cached engine {path.name} matches this GPU, TensorRT, build settings, ONNX "
                             "and plugin kernel")


def _closest_miss(bundle_root: Path, key: EngineKey) -> str:
    """Why the engines already cached are not this one: the one differing in the fewest key fields."""
    best: Optional[list[str]] = None
    best_name = ""
    for other in sorted(engines_dir(bundle_root).glob("*.engine")):
        try:
            diff = key.mismatches(EngineKey.from_dict(read_sidecar(other)["key"]))
        except (ValueError, KeyError, TypeError):
            continue
        if diff and (best is None or len(diff) < len(best)):
            best, best_name = diff, other.name
    if best is None:
        return f"no cached engine {engine_path(bundle_root, key).name}"
    return f"the cached {best_name} was built for another target: {'; '.join(best)}"


def lookup(bundle_root: Path, key: EngineKey) -> CacheLookup:
    """A hit only when the sidecar's key equals `key` and the engine hashes to the sidecar's sha256."""
    path = engine_path(bundle_root, key)
    if not path.is_file():
        return CacheLookup(None, _closest_miss(bundle_root, key))
    try:
        data = read_sidecar(path)
    except ValueError as exc:
        return CacheLookup(None, f"cached engine {path.name} is not trusted: {exc}")
    return _check(path, data, key)


# ---------------------------------------------------------------- what is in the cache, and what fits here

@dataclass(frozen=True)
class EngineEntry:
    """One file under engines/ for `slsg-edge info` and the runtime's choice of engine."""

    file: str
    bytes: int
    key: Optional[dict]             # the sidecar's key, None without a readable sidecar
    request: Optional[EngineRequest]
    created: str
    fits: Optional[bool]            # None: not checked (no TensorRT/GPU here)
    reason: str
    placement: Optional[dict] = None  # a DLA engine's layers on DLA / GPU (builder.LayerPlacement.to_dict)

    def to_dict(self) -> dict:
        return {"file": self.file, "bytes": self.bytes, "key": self.key, "created": self.created,
                "request": self.request.to_dict() if self.request else None, "fits": self.fits,
                "reason": self.reason, "placement": self.placement}


@dataclass(frozen=True)
class Target:
    """This machine as far as engines care: TensorRT's API plan, its full version string, the GPU."""

    api: ApiPlan
    tensorrt_version: str
    device: DeviceInfo


def _entry(bundle: BundleLike, engine: Path, target: Optional[Target]) -> EngineEntry:
    size = engine.stat().st_size
    try:
        data = read_sidecar(engine)
        request = EngineRequest.from_dict(data["request"])
    except (ValueError, KeyError, TypeError) as exc:
        return EngineEntry(engine.name, size, None, None, "", False, str(exc))
    build = data.get("build", {}) if isinstance(data.get("build"), dict) else {}
    created, placement = str(build.get("created", "")), build.get("layer_placement")

    def entry(fits: Optional[bool], reason: str) -> EngineEntry:
        return EngineEntry(engine.name, size, data.get("key"), request, created, fits, reason, placement)

    if target is None:
        return entry(None, "not checked: no TensorRT or GPU here")
    try:
        want = make_recipe(bundle, request, target.api, target.device, target.tensorrt_version).key
    except TensorRTError as exc:
        return entry(False, str(exc))
    if engine.name != f"{want.file_stem()}.engine":
        try:
            recorded = EngineKey.from_dict(data["key"])
            diff = "; ".join(want.mismatches(recorded)) or "file renamed"
        except (ValueError, KeyError, TypeError) as exc:
            diff = f"unreadable key ({exc})"
        return entry(False, f"built for another target: {diff}")
    found = _check(engine, data, want)
    return entry(found.hit, found.reason)


def list_engines(bundle: BundleLike, target: Optional[Target] = None) -> list[EngineEntry]:
    """Every engine in the cache with its key and, when `target` is given, whether it fits this device."""
    folder = engines_dir(Path(bundle.root))
    return [_entry(bundle, p, target) for p in sorted(folder.glob("*.engine"))] if folder.is_dir() else []


def find_in_cache(bundle: BundleLike, precision: str, target: Target) -> CacheLookup:
    """The most recently built engine of `precision` that fits this target (the last `slsg-edge build` is
    what the user wants running); a miss says why each candidate was refused."""
    entries = [e for e in list_engines(bundle, target)
               if e.request is not None and e.request.precision == precision]
    fitting = sorted((e for e in entries if e.fits), key=lambda e: e.created, reverse=True)
    if fitting:
        path = engines_dir(Path(bundle.root)) / fitting[0].file
        return CacheLookup(path, fitting[0].reason)
    if not entries:
        return CacheLookup(None, f"no cached {precision} engine in {engines_dir(Path(bundle.root))}")
    return CacheLookup(None, "; ".join(f"{e.file}: {e.reason}" for e in entries))


def current_target(device_index: int = 0) -> Target:
    """This machine's target; TensorRTError (missing, too old, no GPU) when there is none."""

    trt = load_tensorrt()
    return Target(api_plan(trt.__version__), str(trt.__version__), query_device(device_index))


def find_cached_engine(bundle: BundleLike, precision: str, target: Optional[Target] = None) -> Optional[Path]:
    """A trusted engine for this machine, or None (no TensorRT, no GPU, none built, or stale)."""

    if target is None:
        if not tensorrt_available():
            return None
        try:
            target = current_target()
        except TensorRTError:
            return None
    return find_in_cache(bundle, precision, target).engine_path
