"""Dataset layouts: MVTec LOCO (official and the reference's flattened masks), MVTec AD, a plain folder.

`open_dataset` only lists files and checks each one's signature and end marker (cheap, no decoding), so
it is quick even on full-size LOCO. Anything it cannot use is recorded in the category's `DataReport`
with the file and the way out; nothing is dropped without a line in that report.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from slsg.data.images import IMAGE_SUFFIXES, DataError, check_file, is_image_file, list_images

LAYOUTS = ("loco", "loco_flat", "mvtec_ad", "folder")
LOCO_TYPES = ("logical_anomalies", "structural_anomalies")


class DatasetError(DataError):
    """A dataset that cannot be used at all (no training images, wrong path); the message says why."""


@dataclass
class Sample:
    path: Path
    split: str  # "train" | "validation" | "test"
    label: str  # "good" or the defect folder name
    kind: str  # "good" | "logical" | "structural"
    masks: list[Path]  # one PNG per defect (LOCO official) or one merged mask; [] for good images

    @property
    def is_good(self) -> bool:
        return self.kind == "good"


@dataclass
class Issue:
    path: Path
    problem: str
    action: str  # "skipped" (left out) or "kept" (used, with a caveat)
    fix: str

    def message(self) -> str:
        return f"{self.path}: {self.problem} ({self.action}). {self.fix}"


@dataclass
class DataReport:
    """What was read, converted and left out, for the summary table and for logs."""

    issues: list[Issue] = field(default_factory=list)
    converted: list[tuple[Path, str]] = field(default_factory=list)

    def skip(self, path: Path, problem: str, fix: str) -> None:
        self.issues.append(Issue(Path(path), problem, "skipped", fix))

    def keep(self, path: Path, problem: str, fix: str) -> None:
        self.issues.append(Issue(Path(path), problem, "kept", fix))

    @property
    def skipped(self) -> list[Issue]:
        return [i for i in self.issues if i.action == "skipped"]


@dataclass
class Category:
    name: str
    root: Path
    layout: str  # "loco" | "loco_flat" | "mvtec_ad" | "folder"
    train: list[Sample]
    validation: list[Sample]  # LOCO validation/good; empty otherwise (training holds out a slice)
    test: list[Sample]
    defects_config: list[dict] | None  # LOCO defects_config.json entries, else None
    report: DataReport = field(default_factory=DataReport)

    @property
    def samples(self) -> list[Sample]:
        return [*self.train, *self.validation, *self.test]

    def counts(self) -> Counter:
        """(split, label) → number of images."""
        return Counter((s.split, s.label) for s in self.samples)


def kind_of(label: str) -> str:
    if label == "good":
        return "good"
    return "logical" if "logical" in label else "structural"


def _looks_like_category(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if any((folder / d).is_dir() for d in ("train", "test", "ground_truth", "validation")):
        return True
    return bool(list_images(folder))


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_layout(root: Path) -> str:
    test = root / "test"
    gt = root / "ground_truth"
    if not (root / "train").is_dir() and not (root / "validation").is_dir():
        return "folder"
    is_loco = (root / "validation").is_dir() or any((test / t).is_dir() for t in LOCO_TYPES)
    if not is_loco:
        return "mvtec_ad"
    nested = any(_subdirs(t) for t in _subdirs(gt))
    return "loco" if nested or not gt.is_dir() else "loco_flat"


def _checked_images(folder: Path, report: DataReport) -> list[Path]:
    """Images in `folder`; broken or non-image files are reported and left out."""
    kept = []
    if not folder.is_dir():
        return kept
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        if not is_image_file(p):
            report.skip(p, "not an image file", "Move it out of the dataset folder to silence this.")
            continue
        problem = check_file(p)
        if problem:
            report.skip(p, problem, "Replace or re-export the file, or delete it.")
            continue
        kept.append(p)
    return kept


def _good_samples(folder: Path, split: str, report: DataReport) -> list[Sample]:
    return [Sample(p, split, "good", "good", []) for p in _checked_images(folder, report)]


def _masks_for(image: Path, gt_dir: Path, layout: str) -> list[Path]:
    if layout == "loco":
        return list_images(gt_dir / image.stem)
    mask = gt_dir / f"{image.stem}_mask.png"
    return [mask] if mask.is_file() else []


def _mask_owners(gt_dir: Path, layout: str) -> dict[str, list[Path]]:
    """Image stem → the ground-truth files that claim it."""
    owners: dict[str, list[Path]] = {}
    if layout == "loco":
        for d in _subdirs(gt_dir):
            owners[d.name] = list_images(d)
    else:
        for p in list_images(gt_dir):
            stem = p.stem[: -len("_mask")] if p.stem.endswith("_mask") else p.stem
            owners.setdefault(stem, []).append(p)
    return owners


def _defect_samples(root: Path, label: str, layout: str, report: DataReport) -> list[Sample]:
    gt_dir = root / "ground_truth" / label
    images = _checked_images(root / "test" / label, report)
    stems = {p.stem for p in (root / "test" / label).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    samples = []
    for img in images:
        masks = _masks_for(img, gt_dir, layout)
        broken = [(m, check_file(m)) for m in masks]
        broken = [(m, why) for m, why in broken if why]
        for m, why in broken:
            report.skip(m, f"mask {why}", "Replace the mask; its image is left out until then.")
        if broken:
            report.skip(img, "its ground-truth mask is unusable", "Fix the mask named above.")
            continue
        if not masks:
            # Defect photos without masks are the common case on a line: they count for every image-level metric.
            where = gt_dir / img.stem if layout == "loco" else gt_dir / f"{img.stem}_mask.png"
            report.keep(img, "defect image without a mask", f"Image-level metrics only; add {where} for pixel "
                        "metrics.")
        samples.append(Sample(img, "test", label, kind_of(label), masks))
    for stem, files in sorted(_mask_owners(gt_dir, layout).items()):
        if stem not in stems:
            for f in files:
                report.skip(f, f"mask without an image (no {root / 'test' / label / stem}.*)",
                            "Delete the mask or restore its image.")
    return samples


def _test_samples(root: Path, layout: str, report: DataReport) -> list[Sample]:
    test = root / "test"
    samples: list[Sample] = []
    labels = [d.name for d in _subdirs(test)]
    for label in labels:
        if label == "good":
            samples += [Sample(p, "test", "good", "good", []) for p in _checked_images(test / "good", report)]
        else:
            samples += _defect_samples(root, label, layout, report)
    for d in _subdirs(root / "ground_truth"):
        if d.name not in labels:
            report.skip(d, "ground truth for a defect type with no test images",
                        f"Add {test / d.name}/ or delete this folder.")
    return samples


def _read_defects_config(root: Path, report: DataReport) -> list[dict] | None:
    path = root / "defects_config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
        if not isinstance(cfg, list) or not all(isinstance(e, dict) and "pixel_value" in e for e in cfg):
            raise ValueError("expected a list of {defect_name, pixel_value, ...} entries")
    except (OSError, ValueError) as e:
        report.skip(path, f"unreadable defects_config.json ({e})", "Restore it from the LOCO release.")
        return None
    return cfg


def read_category(root: Path) -> Category:
    """One category folder in any supported layout; raises DatasetError when it has no training images."""
    root = Path(root)
    report = DataReport()
    layout = detect_layout(root)
    if layout == "folder":
        if (root / "test").is_dir() and not list_images(root):
            raise DatasetError(
                f"{root}: has test/ but no train/good/ folder. Put the good training images in "
                f"{root / 'train' / 'good'}/ (or directly in {root}/ for a plain folder).")
        train = _good_samples(root, "train", report)
    else:
        if not (root / "train" / "good").is_dir():
            raise DatasetError(
                f"{root}: no train/good/ folder ({layout} layout). Create {root / 'train' / 'good'}/ "
                "holding the good training images.")
        train = _good_samples(root / "train" / "good", "train", report)
    if not train:
        raise DatasetError(f"{root}: no usable training images (see the skipped files: "
                           f"{[str(i.path) for i in report.skipped][:5]}). Add good PNG/JPEG images.")
    validation = _good_samples(root / "validation" / "good", "validation", report)
    test = _test_samples(root, layout, report)
    defects = _read_defects_config(root, report) if layout in ("loco", "loco_flat") else None
    return Category(root.name, root, layout, train, validation, test, defects, report)


def find_categories(data: Path) -> list[Path]:
    """Category folders under a dataset root, or [data] when data is a category itself."""
    data = Path(data)
    if not data.is_dir():
        raise DatasetError(f"{data}: no such folder. Pass a dataset root or a category folder.")
    if _looks_like_category(data):
        return [data]
    found = [d for d in _subdirs(data) if _looks_like_category(d)]
    if not found:
        raise DatasetError(
            f"{data}: no category found. Expected category folders holding train/good/ (MVTec AD, LOCO) "
            "or a folder of good images.")
    return found


def open_dataset(data: Path, category: str | None = None) -> list[Category]:
    """All categories under `data` (or the one named `category`), read without decoding any image."""
    roots = find_categories(Path(data))
    if category is not None:
        chosen = [r for r in roots if r.name == category]
        if not chosen and (Path(data) / category).is_dir():
            chosen = [Path(data) / category]
        if not chosen:
            names = ", ".join(r.name for r in roots)
            raise DatasetError(f"{data}: no category '{category}'. Available: {names}.")
        roots = chosen
    return [read_category(r) for r in roots]
