"""The line's own memory beside a bundle: reviewed frames, bundle versions, which one runs, and the audit log.

`model.slsg/` as exported is version 1 and is never written to. Everything the line adds lives in
`model.slsg.line/` next to it:

    line-good/     frames an operator confirmed good (false rejects): PNG + a JSON of what the model said
    line-defect/   frames an operator confirmed defective
    versions/v0002/ …  bundles made by a refit, each a complete bundle (unchanged files hard-linked), hashed
    current.json   the version the line runs and the ones it ran before (what rollback returns to)
    audit.jsonl    every review, refit, switch and rollback: who, when, which frames, before and after

A version becomes current only after it verifies (`load_bundle`), and `current.json` is replaced atomically, so a
power cut leaves either the old or the new choice, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.errors import SlsgError
from edge_runtime.manifest import MANIFEST_NAME, Manifest, read_manifest, write_json_atomic, write_manifest
from edge_runtime.records import iso

GOOD, DEFECT = "good", "defect"
LABELS = (GOOD, DEFECT)
_VERSION_DIR = re.compile(r"^v(\d{4,})$")


class TeachError(SlsgError, ValueError):
    """A review, refit or version switch that cannot be done; the message says why and what to do."""


@dataclass
class Version:
    """One bundle version the line can run."""

    number: int
    path: Path
    lineage: dict

    def describe(self) -> dict:
        return {"version": self.number, "path": str(self.path), **self.lineage}


def line_folder(bundle: Path) -> Path:
    """Where the line's memory of `bundle` lives: `model.slsg.line/` beside `model.slsg/`."""
    bundle = Path(bundle).resolve()
    return bundle.parent / f"{bundle.name}.line"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


class LineStore:
    """Reviews, versions and the audit log of one bundle on one line. Thread-safe."""

    def __init__(self, bundle: Path, folder: Optional[Path] = None) -> None:
        self.original = Path(bundle).resolve()
        read_manifest(self.original)  # BundleError with what is wrong: no such folder, a file, no manifest, …
        self.folder = Path(folder) if folder is not None else line_folder(self.original)
        for sub in ("versions", *(f"line-{label}" for label in LABELS)):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ versions

    def version_path(self, number: int) -> Path:
        return self.original if number == 1 else self.folder / "versions" / f"v{number:04d}"

    def versions(self) -> list[Version]:
        out = [Version(1, self.original, {"made": "slsg export"})]
        for p in sorted((self.folder / "versions").iterdir()):
            m = _VERSION_DIR.match(p.name)
            if m and (p / MANIFEST_NAME).is_file():
                out.append(Version(int(m.group(1)), p, read_manifest(p).lineage or {}))
        return out

    def _pointer(self) -> dict:
        path = self.folder / "current.json"
        if not path.is_file():
            return {"version": 1, "before": []}
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def current(self) -> int:
        return int(self._pointer()["version"])

    def open_current(self) -> Bundle:
        """The bundle the line runs, verified."""
        return load_bundle(self.version_path(self.current))

    def new_version(self, parent: int, edit: Callable[[Path, Manifest], Manifest], lineage: dict) -> Version:
        """A complete copy of version `parent` (files hard-linked, engines left to be rebuilt), changed by
        `edit(folder, manifest) -> manifest` (which may replace files in the folder), hashed anew, and renamed into
        place only when whole. It is not made current: `switch` does that."""
        with self._lock:
            source = load_bundle(self.version_path(parent))
            number = max(v.number for v in self.versions()) + 1
            final = self.version_path(number)
            staging = Path(tempfile.mkdtemp(dir=self.folder / "versions", prefix=f".v{number:04d}-"))
            try:
                for name in source.manifest.files:
                    _link_or_copy(source.root / name, staging / name)
                manifest = Manifest.from_dict(source.manifest.to_dict(), f"version {parent}")
                manifest = edit(staging, manifest)
                manifest.lineage = {"version": number, "parent": parent, "made": iso(time.time()), **lineage}
                manifest.created = ""
                write_manifest(staging, manifest, rehash=True)
                load_bundle(staging)
                os.replace(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            return Version(number, final, manifest.lineage)

    def switch(self, number: int, who: str, action: str = "switch") -> Bundle:
        """Make version `number` the one the line runs; a version whose files do not verify is refused."""
        with self._lock:
            known = {v.number for v in self.versions()}
            if number not in known:
                raise TeachError(f"there is no version {number} of {self.original} (versions: "
                                 f"{', '.join(map(str, sorted(known)))})")
            bundle = load_bundle(self.version_path(number))  # BundleError: damaged, refused before it runs
            pointer = self._pointer()
            if pointer["version"] != number:
                before = [*pointer.get("before", []), pointer["version"]] if action != "rollback" else \
                    pointer.get("before", [])[:-1]
                write_json_atomic(self.folder / "current.json", {"version": number, "before": before})
            self.audit(who, action, {"from": pointer["version"], "to": number})
            return bundle

    def rollback(self, who: str) -> Bundle:
        """Back to the version that ran before the current one."""
        with self._lock:
            before = self._pointer().get("before", [])
            if not before:
                raise TeachError(f"version {self.current} is the first the line ran: there is nothing to roll back to")
            return self.switch(int(before[-1]), who, action="rollback")

    # ------------------------------------------------------------------ reviews

    def review(self, frame_id: str, image: np.ndarray, record: dict, label: str, who: str) -> Path:
        """File a judged frame as confirmed good or confirmed defective (a second review moves it)."""
        if label not in LABELS:
            raise TeachError(f"a review is {' or '.join(LABELS)}, not {label!r}")
        if not re.fullmatch(r"[\w.-]+", frame_id):
            raise TeachError(f"frame id {frame_id!r} is not a plain name")
        with self._lock:
            for other in LABELS:
                for suffix in (".png", ".json"):
                    (self.folder / f"line-{other}" / f"{frame_id}{suffix}").unlink(missing_ok=True)
            target = self.folder / f"line-{label}" / f"{frame_id}.png"
            if not cv2.imwrite(str(target), image):
                raise TeachError(f"cannot write {target}: check the disk and the folder's permissions")
            meta = {**record, "label": label, "reviewed_by": who, "reviewed": iso(time.time())}
            write_json_atomic(target.with_suffix(".json"), meta)
            self.audit(who, "review", {"frame": frame_id, "label": label, "score": record.get("score"),
                                       "verdict": record.get("verdict"), "version": record.get("version")})
            return target

    def confirmed(self, label: str) -> list[Path]:
        return sorted((self.folder / f"line-{label}").glob("*.png"))

    def labels(self) -> dict:
        """Frame id → label for every reviewed frame."""
        return {p.stem: label for label in LABELS for p in self.confirmed(label)}

    # ------------------------------------------------------------------ audit

    def audit(self, who: str, action: str, detail: dict) -> None:
        line = json.dumps({"time": iso(time.time()), "who": who, "action": action, **detail}, default=str)
        with self._lock, open(self.folder / "audit.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def audit_log(self, last: int = 100) -> list[dict]:
        path = self.folder / "audit.jsonl"
        if not path.is_file():
            return []
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()[-last:]]
