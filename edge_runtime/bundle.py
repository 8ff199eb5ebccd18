"""The bundle (`model.slsg/`): one folder that carries the model, its threshold and the hash of every file.

A bundle is copied by hand to machines beside a factory line; a truncated copy or a bundle made by a newer
toolkit must be refused with a message that says what to do, never run with a silently different model.
Engines under `engines/` are built on the device and are deliberately left out of the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.manifest import (
    ENGINES_DIR,
    BundleError,
    FileRecord,
    Manifest,
    bundle_files,
    read_manifest,
    sha256_file,
    write_manifest,
)
from edge_runtime.preprocess import Normalization
from edge_runtime.scoring import Threshold

#: "bf16" names model.onnx run in OpenVINO's bf16 arithmetic: listed under `models` only once its gate passed.
PRECISIONS = ("fp32", "fp16", "int8-s8", "int8-u8", "bf16")


@dataclass
class Bundle:
    """A verified bundle: its folder and its manifest, with the paths the runtime opens."""

    root: Path
    manifest: Manifest

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def size(self) -> tuple[int, int]:
        return self.manifest.size

    @property
    def normalization(self) -> Normalization:
        return self.manifest.normalization

    @property
    def threshold(self) -> Threshold:
        """The fp32 model's threshold (the bundle's reference model)."""
        return Threshold.from_dict(self.manifest.threshold)

    def threshold_for(self, model: str) -> Threshold:
        """The threshold set from `model`'s own scores ("fp32", "int8-s8", ...): each model file scores good images a
        little differently, so each has its own."""
        return self.manifest.threshold_for(model)

    @property
    def score_norms(self) -> dict[str, dict]:
        return self.manifest.score_norms

    @property
    def models(self) -> dict[str, Path]:
        return {k: self.root / v for k, v in self.manifest.models.items() if (self.root / v).is_file()}

    def head_for(self, model: str) -> Path | None:
        """The global head refitted for `model` ("openvino:int8-s8", ...; `backends.refitted_head`), None where the
        model runs the head stored in its file."""
        name = self.manifest.heads.get(model)
        return self.root / name if name else None

    @property
    def engines_dir(self) -> Path:
        return self.root / ENGINES_DIR


def add_files(root: Path, names: list[str], precision: str | None = None) -> Manifest:
    """Add files (or folders of files) to an existing, verified bundle and re-write its manifest.

    The bundle is verified first, so a file damaged since export is refused instead of re-hashed and blessed.
    `precision` (with exactly one file) also records it under `models`, e.g. export adding `int8-u8`.
    """
    bundle = load_bundle(root)
    manifest = bundle.manifest
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
        manifest.files[name] = FileRecord.of(bundle.root / name)
    if precision is not None:
        if precision not in PRECISIONS:
            raise BundleError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        if len(names) != 1 or not (bundle.root / names[0]).is_file():
            raise BundleError("a precision names one model file: add the model alone")
        manifest.models[precision] = Path(names[0]).as_posix()
    return write_manifest(bundle.root, manifest, rehash=False)


def add_file(root: Path, name: str, precision: str | None = None) -> Manifest:
    """One file (or folder) into an existing bundle; see `add_files`."""
    return add_files(root, [name], precision)


def _check_name(root: Path, name: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not name:
        raise BundleError(
            f"bundle {root} lists a file outside itself ({name!r}): it is damaged or foreign; export it again"
        )


def _verify_files(root: Path, files: dict[str, FileRecord]) -> None:
    for name, rec in files.items():
        _check_name(root, name)
        p = root / name
        if not p.is_file():
            raise BundleError(
                f"bundle {root} is missing {name}: copy the whole folder again or re-run `slsg export`"
            )
        size = p.stat().st_size
        if size != rec.bytes:
            raise BundleError(
                f"{p} has {size} bytes, the manifest says {rec.bytes}: the file is "
                "truncated or replaced; copy the bundle again"
            )
        if sha256_file(p) != rec.sha256:
            raise BundleError(
                f"{p} does not match its sha256 in the manifest: the file is damaged; copy the bundle again"
            )


def load_bundle(root: Path) -> Bundle:
    """Read and verify a bundle: schema, version, and the size and sha256 of every listed file."""
    root = Path(root)
    manifest = read_manifest(root)
    _verify_files(root, manifest.files)
    listed = [(f"{precision} model", name) for precision, name in manifest.models.items()]
    listed += [(f"head refitted for {model},", name) for model, name in manifest.heads.items()]
    for what, name in listed:
        if name not in manifest.files:
            raise BundleError(
                f"the {what} {name} is not covered by the manifest's hashes: "
                "the bundle was edited by hand; re-run `slsg export`"
            )
    return Bundle(root=root, manifest=manifest)
