"""The bundle (`model.slsg/`): one folder that carries the model, its threshold and the hash of every file.

A bundle is copied by hand to machines beside a factory line; a truncated copy or a bundle made by a newer
toolkit must be refused with a message that says what to do, never run with a silently different model.
Engines under `engines/` are built on the device and are deliberately left out of the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge_runtime.errors import SlsgError
from edge_runtime.preprocess import Normalization
from edge_runtime.scoring import Threshold

SCHEMA = "slsg.bundle"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
ENGINES_DIR = "engines"
#: "bf16" names model.onnx run in OpenVINO's bf16 arithmetic: listed under `models` only once its gate passed.
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu", "bf16")
_CHUNK = 1 << 20


class BundleError(SlsgError):
    """A bundle that cannot be trusted or read; the message names the problem and the way out."""


@dataclass
class Bundle:
    """A verified bundle: its folder and its manifest, with typed views of what the runtime needs."""

    root: Path
    manifest: dict

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.manifest["preprocess"]["size"]
        return int(h), int(w)

    @property
    def normalization(self) -> Normalization:
        return Normalization.from_dict(self.manifest["preprocess"])

    @property
    def threshold(self) -> Threshold:
        """The fp32 model's threshold (the bundle's reference model)."""
        return Threshold.from_dict(self.manifest["threshold"])

    def threshold_for(self, model: str) -> Threshold:
        """The threshold set from `model`'s own scores ("fp32", "int8", ...): each model file scores good images a
        little differently, so each has its own. Bundles written before per-model thresholds have one for all."""
        per_model = self.manifest.get("thresholds", {})
        if model in per_model:
            return Threshold.from_dict(per_model[model])
        return self.threshold

    @property
    def score_norms(self) -> dict[str, dict]:
        """The fused score's per-head normalisation ({head: {location, scale, …}}); empty for a one-head model."""
        return dict(self.manifest.get("scores", {}).get("score", {}).get("norms", {}))

    @property
    def models(self) -> dict[str, Path]:
        return {
            k: self.root / v for k, v in self.manifest.get("models", {}).items() if (self.root / v).is_file()
        }

    def head_for(self, model: str) -> Path | None:
        """The global head refitted for `model` ("openvino:int8", ...; `backends.refitted_head`), None where the
        model runs the head stored in its file."""
        name = self.manifest.get("heads", {}).get(model)
        return self.root / name if name else None

    @property
    def engines_dir(self) -> Path:
        return self.root / ENGINES_DIR


def sha256_file(path: Path) -> str:
    """Hash in chunks: an ONNX model can be hundreds of MB on a device with little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def bundle_files(root: Path) -> list[str]:
    """Every file the manifest must cover: all regular files except the manifest itself and `engines/`."""
    names = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.parts[0] == ENGINES_DIR or rel.as_posix() == MANIFEST_NAME:
            continue
        names.append(rel.as_posix())
    return names


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write beside the target and rename, so a crash never leaves half a manifest."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(root: Path, manifest: dict) -> dict:
    """Stamp schema, version and creation time, hash every file (except engines/), write manifest.json."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(
            f"bundle folder {root} does not exist: create it and put the model files in it first"
        )
    out = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.update({k: v for k, v in manifest.items() if k not in ("schema", "schema_version", "files")})
    if "created" in manifest:
        out["created"] = manifest["created"]
    for precision, name in out.get("models", {}).items():
        if not (root / name).is_file():
            raise BundleError(f"manifest names {name} as the {precision} model but {root / name} is missing")
    out["files"] = {name: file_record(root / name) for name in bundle_files(root)}
    _write_json_atomic(root / MANIFEST_NAME, out)
    return out


def add_files(root: Path, names: list[str], precision: str | None = None) -> dict:
    """Add files (or folders of files) to an existing, verified bundle and re-write its manifest.

    The bundle is verified first, so a file damaged since export is refused instead of re-hashed and blessed.
    `precision` (with exactly one file) also records it under `models`, e.g. export adding `int8-cpu`.
    """
    bundle = load_bundle(root)
    manifest = json.loads(json.dumps(bundle.manifest))
    added: list[str] = []
    for name in names:
        target = bundle.root / name
        if target.is_dir():
            added += [n for n in bundle_files(bundle.root) if n.startswith(Path(name).as_posix() + "/")]
        elif target.is_file():
            added.append(Path(name).as_posix())
        else:
            raise BundleError(f"cannot add {name} to bundle {bundle.root}: {target} does not exist")
    for name in added:
        _check_name(bundle.root, name)
        manifest["files"][name] = file_record(bundle.root / name)
    if precision is not None:
        if precision not in PRECISIONS:
            raise BundleError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        if len(names) != 1 or not (bundle.root / names[0]).is_file():
            raise BundleError("a precision names one model file: add the model alone")
        manifest.setdefault("models", {})[precision] = Path(names[0]).as_posix()
    _write_json_atomic(bundle.root / MANIFEST_NAME, manifest)
    return manifest


def add_file(root: Path, name: str, precision: str | None = None) -> dict:
    """One file (or folder) into an existing bundle; see `add_files`."""
    return add_files(root, [name], precision)


def _check_name(root: Path, name: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not name:
        raise BundleError(
            f"bundle {root} lists a file outside itself ({name!r}): it is damaged or foreign; export it again"
        )


def _read_manifest(root: Path) -> dict:
    if not root.exists():
        raise BundleError(
            f"bundle {root} does not exist: check the path (a bundle is a folder like model.slsg/)"
        )
    if not root.is_dir():
        raise BundleError(
            f"bundle {root} is a file, not a folder: give the model.slsg/ folder made by `slsg export`"
        )
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise BundleError(
            f"bundle {root} has no {MANIFEST_NAME}: it is incomplete or not a bundle; "
            "copy the whole folder again or re-run `slsg export`"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(
            f"{mpath} is not valid JSON ({e}): the bundle is damaged; copy it again or re-run `slsg export`"
        ) from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath} does not hold a JSON object: the bundle is damaged or foreign")
    return manifest


def _check_schema(root: Path, manifest: dict) -> None:
    if manifest.get("schema") != SCHEMA:
        raise BundleError(
            f"{root} is not an slsg bundle (schema {manifest.get('schema')!r}, expected "
            f"{SCHEMA!r}): give a folder made by `slsg export`"
        )
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(
            f"{root}: schema_version {version!r} is not a positive integer: the manifest is damaged"
        )
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"bundle {root} has schema version {version}, this runtime reads up to "
            f"{SCHEMA_VERSION}: it was made by a newer slsg; upgrade the runtime "
            "(pip install -U slsg)"
        )
    for key in ("files", "preprocess", "threshold"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(
                f"{root}/{MANIFEST_NAME} lacks the {key!r} section: the manifest is damaged; "
                "re-run `slsg export`"
            )


def _verify_files(root: Path, files: dict) -> None:
    for name, rec in files.items():
        _check_name(root, name)
        p = root / name
        if not p.is_file():
            raise BundleError(
                f"bundle {root} is missing {name}: copy the whole folder again or re-run `slsg export`"
            )
        size = p.stat().st_size
        if size != rec.get("bytes"):
            raise BundleError(
                f"{p} has {size} bytes, the manifest says {rec.get('bytes')}: the file is "
                "truncated or replaced; copy the bundle again"
            )
        if sha256_file(p) != rec.get("sha256"):
            raise BundleError(
                f"{p} does not match its sha256 in the manifest: the file is damaged; copy the bundle again"
            )


def load_bundle(root: Path) -> Bundle:
    """Read and verify a bundle: schema, version, and the size and sha256 of every listed file."""
    root = Path(root)
    manifest = _read_manifest(root)
    _check_schema(root, manifest)
    _verify_files(root, manifest["files"])
    listed = [(f"{precision} model", name) for precision, name in manifest.get("models", {}).items()]
    listed += [(f"head refitted for {model},", name) for model, name in manifest.get("heads", {}).items()]
    for what, name in listed:
        if name not in manifest["files"]:
            raise BundleError(
                f"the {what} {name} is not covered by the manifest's hashes: "
                "the bundle was edited by hand; re-run `slsg export`"
            )
    bundle = Bundle(root=root, manifest=manifest)
    try:
        bundle.size, bundle.normalization, bundle.threshold  # noqa: B018 — parse once, fail here not mid-run
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(
            f"{root}/{MANIFEST_NAME} has an unreadable preprocess or threshold section ({e!r}): "
            "the manifest is damaged; re-run `slsg export`"
        ) from None
    return bundle
