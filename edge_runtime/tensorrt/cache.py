"""The engine cache under `BUNDLE/engines/`.

An engine is valid only for the GPU, compute capability, TensorRT version, precision recipe and ONNX
bytes that made it. Each engine file has a sidecar JSON with that full key, the build settings and the
engine's own sha256. A lookup trusts an engine only when every key field matches and the file still hashes
to the sidecar's value; anything else (stale, foreign, damaged, half-written) is a miss with a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .device import DeviceInfo

ENGINES_DIR = "engines"
SIDECAR_SCHEMA = "slsg.engine"
SIDECAR_VERSION = 1


class BundleLike(Protocol):
    root: Path
    manifest: dict


@dataclass(frozen=True)
class EngineKey:
    gpu_name: str
    compute_capability: str      # "8.7"
    tensorrt_version: str        # "10.3.0"
    precision: str               # "fp32" | "fp16" | "int8"
    variant: str                 # "plain" | "qdq" | "calib" (see PrecisionPlan.variant)
    onnx_name: str
    onnx_sha256: str

    @classmethod
    def for_device(cls, device: DeviceInfo, tensorrt_version: str, precision: str, variant: str,
                   onnx_name: str, onnx_sha256: str) -> EngineKey:
        cc = f"{device.compute_capability[0]}.{device.compute_capability[1]}"
        return cls(device.name, cc, tensorrt_version, precision, variant, onnx_name, onnx_sha256)

    def file_stem(self) -> str:
        """`<precision>[-<variant>]-<gpu-slug>-sm<cc>-trt<ver>-<sha8>`: readable, and unique per key."""
        prec = self.precision if self.variant in ("plain", "qdq") else f"{self.precision}-{self.variant}"
        sm = self.compute_capability.replace(".", "")
        return f"{prec}-{gpu_slug(self.gpu_name)}-sm{sm}-trt{self.tensorrt_version}-{self.onnx_sha256[:8]}"

    @classmethod
    def from_dict(cls, d: dict) -> EngineKey:
        return cls(**{f.name: str(d[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class CacheLookup:
    engine_path: Path | None
    reason: str                  # why it is a hit or a miss, for the user

    @property
    def hit(self) -> bool:
        return self.engine_path is not None


def gpu_slug(name: str) -> str:
    """"NVIDIA GeForce RTX 4090" → "geforce-rtx-4090"; "Orin (nvgpu)" → "orin-nvgpu"."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    s = re.sub(r"^nvidia-", "", s)
    return s[:48] or "gpu"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def onnx_sha256(manifest: dict, onnx_name: str) -> str:
    """The ONNX file's hash as the (already verified) manifest records it."""
    entry = manifest.get("files", {}).get(onnx_name)
    if not entry or "sha256" not in entry:
        raise KeyError(f"the bundle manifest has no sha256 for {onnx_name!r} in 'files'; re-export it")
    return str(entry["sha256"])


def engines_dir(bundle_root: Path) -> Path:
    return Path(bundle_root) / ENGINES_DIR


def engine_path(bundle_root: Path, key: EngineKey) -> Path:
    return engines_dir(bundle_root) / f"{key.file_stem()}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def _mismatches(expected: EngineKey, recorded: EngineKey) -> list[str]:
    out = []
    for f in fields(EngineKey):
        want, got = getattr(expected, f.name), getattr(recorded, f.name)
        if want != got:
            out.append(f"{f.name} {got!r} ≠ {want!r}")
    return out


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
                         f"expected {SIDECAR_VERSION}")
    return data


def lookup(bundle_root: Path, key: EngineKey) -> CacheLookup:
    """A hit only when the sidecar's key equals `key` and the engine file hashes to the sidecar's sha256."""
    path = engine_path(bundle_root, key)
    if not path.is_file():
        return CacheLookup(None, f"no cached engine {path.name}")
    try:
        data = read_sidecar(path)
        recorded = EngineKey.from_dict(data["key"])
        want_sha = str(data["engine"]["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        return CacheLookup(None, f"cached engine {path.name} is not trusted: {exc}")
    diff = _mismatches(key, recorded)
    if diff:
        return CacheLookup(None, f"cached engine {path.name} was built for another target: {'; '.join(diff)}")
    if sha256_file(path) != want_sha:
        return CacheLookup(None, f"cached engine {path.name} is damaged (sha256 differs from its sidecar)")
    return CacheLookup(path, f"cached engine {path.name} matches this GPU, TensorRT and ONNX")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write beside the target then rename, so a crash or a full disk never leaves a half engine."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_engine(bundle_root: Path, key: EngineKey, engine_bytes: bytes, build: dict[str, Any]) -> Path:
    """Save an engine and its sidecar (engine first: a sidecar never points at a missing engine)."""
    path = engine_path(bundle_root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, bytes(engine_bytes))
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        "schema_version": SIDECAR_VERSION,
        "key": asdict(key),
        "engine": {"file": path.name, "sha256": hashlib.sha256(engine_bytes).hexdigest(),
                   "bytes": len(engine_bytes)},
        "build": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **build},
    }
    _atomic_write(sidecar_path(path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return path


def list_engines(bundle_root: Path) -> list[dict]:
    """Every engine in the cache with its sidecar (or the reason it has none), for `slsg-edge info`."""
    out = []
    for engine in sorted(engines_dir(bundle_root).glob("*.engine")):
        try:
            data = read_sidecar(engine)
            out.append({"file": engine.name, "key": data.get("key", {}), "build": data.get("build", {}),
                        "bytes": engine.stat().st_size})
        except ValueError as exc:
            out.append({"file": engine.name, "error": str(exc), "bytes": engine.stat().st_size})
    return out
