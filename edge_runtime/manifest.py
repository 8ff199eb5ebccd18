"""The bundle's manifest (`manifest.json`), typed: read, checked and written here and nowhere else.

`slsg export` writes it, `slsg-edge threshold` and `add_files` rewrite it, and every reader — the runtime, the
TensorRT builder, `slsg evaluate`, `slsg-edge info` — reads its fields from `Manifest`, never from the JSON.
The schema is versioned: a manifest of a newer version is refused with the way out (upgrade the runtime); one
that lacks what the runtime needs is refused as damaged. The export's own record (`export`: parity, gates,
lint, what was left out) and the precision reports are kept whole for people and tools to read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from edge_runtime.errors import SlsgError
from edge_runtime.preprocess import Normalization
from edge_runtime.scoring import Threshold

SCHEMA = "slsg.bundle"
#: 2: the INT8 files are keyed by their activations, `int8-s8` and `int8-u8` (1 said `int8` and `int8-cpu`).
SCHEMA_VERSION = 2
#: Version 1's model keys → today's; the files keep the names they were written with (`models` maps key → file).
V1_MODEL_KEYS = {"int8": "int8-s8", "int8-cpu": "int8-u8"}
MANIFEST_NAME = "manifest.json"
ENGINES_DIR = "engines"
_CHUNK = 1 << 20


class BundleError(SlsgError):
    """A bundle that cannot be trusted or read; the message names the problem and the way out."""


def sha256_file(path: Path) -> str:
    """Hash in chunks: an ONNX model can be hundreds of MB on a device with little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class FileRecord:
    """What a listed file must be: its size and sha256."""

    sha256: str
    bytes: int

    @classmethod
    def of(cls, path: Path) -> FileRecord:
        return cls(sha256_file(path), path.stat().st_size)


@dataclass
class InputSpec:
    """The graph input: uint8 BGR frames, NHWC (the runtime hands frames over as the camera gives them)."""

    name: str = "image"
    dtype: str = "uint8"
    shape: list = field(default_factory=lambda: [1, 0, 0, 3])   # [N or "N", H, W, 3]
    layout: str = "NHWC"
    color: str = "BGR"

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.shape[0], int)


@dataclass
class Manifest:
    """Everything a bundle says about itself. Threshold records keep where they came from (`source`, `transfer`)
    beside the `Threshold` fields; `threshold_for` reads them as `Threshold`s."""

    preprocess: dict                                     # edge_runtime.preprocess.preprocess_spec
    threshold: dict                                      # the fp32 model's threshold record
    files: dict[str, FileRecord] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)             # precision → model file
    thresholds: dict[str, dict] = field(default_factory=dict)        # model key → its own threshold record
    heads: dict[str, str] = field(default_factory=dict)              # model key → refitted global head file
    input: Optional[InputSpec] = None
    outputs: dict[str, dict] = field(default_factory=dict)
    scores: dict[str, dict] = field(default_factory=dict)            # `score` and each `score_<head>`: meaning
    model: dict = field(default_factory=dict)                        # slsg.model.ModelConfig, as a dict
    calibration: Optional[dict] = None                               # the INT8 calibration set (TensorRT reads it)
    plugins: list[str] = field(default_factory=list)                 # TensorRT plugins the graph needs
    openvino_int8: dict[str, dict] = field(default_factory=dict)     # flavour → its OpenVINO gate
    threshold_history: list[dict] = field(default_factory=list)      # thresholds replaced on the line
    good_reference: Optional[dict] = None                            # FP32's out-of-sample good scores
    lineage: Optional[dict] = None                                   # a line version: its number, parent, who, why
    data_fingerprint: Optional[dict] = None
    versions: dict[str, str] = field(default_factory=dict)
    export: dict = field(default_factory=dict)                       # the export's record (parity, gates, lint)
    int8_report: Optional[dict] = None
    fp16_report: Optional[dict] = None
    bf16_report: Optional[dict] = None
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)   # sections this version does not know, kept as they were

    # ---------------------------------------------------------------- typed views

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.preprocess["size"]
        return int(h), int(w)

    @property
    def normalization(self) -> Normalization:
        return Normalization.from_dict(self.preprocess)

    def set_threshold(self, model: str, record: dict) -> None:
        """`model`'s threshold record (a `Threshold` as a dict, with where it came from); fp32's is also the bundle's
        `threshold`."""
        self.thresholds[model] = record
        if model == "fp32":
            self.threshold = record

    def threshold_for(self, model: str) -> Threshold:
        """The threshold set from `model`'s own scores ("fp32", "int8-s8", "openvino:int8-s8", …); bundles written
        before per-model thresholds have one for all."""
        return Threshold.from_dict(self.thresholds.get(model, self.threshold))

    @property
    def score_norms(self) -> dict[str, dict]:
        """The fused score's per-head normalisation ({head: {location, scale, …}}); empty for a one-head model."""
        return dict(self.scores.get("score", {}).get("norms", {}))

    @property
    def left_out(self) -> dict[str, dict]:
        """Precisions the export was asked for and left out: {precision: {reasons, next}}."""
        return dict(self.export.get("left_out", {}))

    # ---------------------------------------------------------------- JSON

    @classmethod
    def from_dict(cls, d: dict, where: str = "the manifest") -> Manifest:
        """The manifest of a JSON object, checked: an slsg bundle, a version this runtime reads, and the sections
        the runtime needs, readable."""
        if d.get("schema") != SCHEMA:
            raise BundleError(f"{where} is not an slsg bundle (schema {d.get('schema')!r}, expected {SCHEMA!r}): "
                              "give a folder made by `slsg export`")
        version = d.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BundleError(f"{where}: schema_version {version!r} is not a positive integer: the manifest is damaged")
        if version > SCHEMA_VERSION:
            raise BundleError(f"{where} has schema version {version}, this runtime reads up to {SCHEMA_VERSION}: it "
                              "was made by a newer slsg; upgrade the runtime (pip install -U slsg)")
        for key in ("files", "preprocess", "threshold"):
            if not isinstance(d.get(key), dict):
                raise BundleError(f"{where} lacks the {key!r} section: the manifest is damaged; re-run `slsg export`")
        if version == 1:
            d, version = _from_v1(d), 2
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in d.items() if k in known and v is not None}
        values["extra"] = {k: v for k, v in d.items() if k not in known and k != "schema"}
        try:
            values["files"] = {name: FileRecord(str(r["sha256"]), int(r["bytes"])) if isinstance(r, dict)
                               else FileRecord("", -1) for name, r in d["files"].items()}
            if isinstance(d.get("input"), dict):
                values["input"] = InputSpec(**d["input"])
            manifest = cls(**values)
            manifest.size, manifest.normalization, manifest.threshold_for("fp32")  # noqa: B018 — fail here, not mid-run
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{where} has an unreadable section ({e!r}): the manifest is damaged; "
                              "re-run `slsg export`") from None
        return manifest

    @classmethod
    def new(cls, sections: dict) -> Manifest:
        """A new bundle's manifest from its sections (as `to_dict` would write them), checked like one read back;
        `write_manifest` hashes the files."""
        return cls.from_dict({**sections, "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                              "files": dict(sections.get("files") or {})}, "the new manifest")

    def to_dict(self) -> dict:
        """The JSON object, sections in a stable order; empty optional sections are left out."""
        out: dict[str, Any] = {"schema": SCHEMA, "schema_version": self.schema_version, "created": self.created}
        for f in fields(self):
            if f.name in ("schema_version", "created", "extra"):
                continue
            value = getattr(self, f.name)
            if value is None or (value == {} and f.name not in ("files",)) or value == []:
                continue
            out[f.name] = asdict(value) if isinstance(value, InputSpec) else value
        out.update(self.extra)
        out["files"] = {name: asdict(r) for name, r in self.files.items()}
        return out


def _v1_key(key: str) -> str:
    """A version-1 model key ("int8", "openvino:int8-cpu", …) as today's."""
    prefix, _, name = key.rpartition(":")
    return f"{prefix}:{V1_MODEL_KEYS[name]}" if prefix and name in V1_MODEL_KEYS else V1_MODEL_KEYS.get(key, key)


def _from_v1(d: dict) -> dict:
    """A version-1 manifest with today's model keys: every section keyed by model (`models`, `thresholds`, `heads`,
    `openvino_int8`, the INT8 report's flavours and kept list, what the export left out, the threshold history).
    Nothing on disk moves."""
    d = dict(d, schema_version=2)
    for section in ("models", "thresholds", "heads", "openvino_int8"):
        if isinstance(d.get(section), dict):
            d[section] = {_v1_key(k): v for k, v in d[section].items()}
    report = d.get("int8_report")
    flavour_refused = isinstance(report, dict) and "int8" in (report.get("flavours") or {})
    if isinstance(report, dict):
        report = dict(report)
        if isinstance(report.get("flavours"), dict):
            report["flavours"] = {_v1_key(k): v for k, v in report["flavours"].items()}
        if isinstance(report.get("kept"), list):
            report["kept"] = [_v1_key(k) for k in report["kept"]]
        d["int8_report"] = report
    export = d.get("export")
    if isinstance(export, dict) and isinstance(export.get("left_out"), dict):
        # "int8" is the symmetric file where the INT8 step reported on it, else the whole precision
        left = {k if k == "int8" and not flavour_refused else _v1_key(k): v for k, v in export["left_out"].items()}
        d["export"] = dict(export, left_out=left)
    if isinstance(d.get("threshold_history"), list):
        d["threshold_history"] = [dict(h, model=_v1_key(h["model"])) if isinstance(h, dict) and "model" in h else h
                                  for h in d["threshold_history"]]
    return d


def bundle_files(root: Path) -> list[str]:
    """Every file the manifest must cover: all regular files except the manifest itself and `engines/`."""
    names = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.parts[0] == ENGINES_DIR or rel.as_posix() == MANIFEST_NAME:
            continue
        names.append(rel.as_posix())
    return names


def write_json_atomic(path: Path, data: dict) -> None:
    """Write beside the target, flush to disk and rename, so a crash or a power cut never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(root: Path, manifest: Manifest, rehash: bool = True) -> Manifest:
    """Write `manifest.json` into the bundle folder `root`, stamped with the creation time if it has none; with
    `rehash`, every file (except engines/) is hashed anew (a new bundle), else the records stand (a rewrite of a
    verified bundle's manifest)."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"bundle folder {root} does not exist: create it and put the model files in it first")
    manifest.created = manifest.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    for precision, name in manifest.models.items():
        if not (root / name).is_file():
            raise BundleError(f"manifest names {name} as the {precision} model but {root / name} is missing")
    if rehash:
        manifest.files = {name: FileRecord.of(root / name) for name in bundle_files(root)}
    write_json_atomic(root / MANIFEST_NAME, manifest.to_dict())
    return manifest


def read_manifest(root: Path) -> Manifest:
    """The manifest of the bundle folder `root`, checked (`Manifest.from_dict`); the files are not verified here."""
    root = Path(root)
    if not root.exists():
        raise BundleError(f"bundle {root} does not exist: check the path (a bundle is a folder like model.slsg/)")
    if not root.is_dir():
        raise BundleError(f"bundle {root} is a file, not a folder: give the model.slsg/ folder made by `slsg export`")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"bundle {root} has no {MANIFEST_NAME}: it is incomplete or not a bundle; copy the whole "
                          "folder again or re-run `slsg export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}): the bundle is damaged; copy it again or re-run "
                          "`slsg export`") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} does not hold a JSON object: the bundle is damaged or foreign")
    return Manifest.from_dict(data, f"{root}/{MANIFEST_NAME}")
