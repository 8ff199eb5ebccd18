"""Choosing calibration sets from good training/validation images, and storing them in a bundle.

A calibration set must look like what the line sees when all is well, so it is drawn only from good
train/validation images — never from test data (a test image in the calibration set leaks the evaluation).
Every image goes through the runtime's own `prepare`, so the stored tensors are exactly the ONNX input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.backends.passes import in_order
from edge_runtime.errors import SlsgError
from edge_runtime.manifest import sha256_file
from edge_runtime.preprocess import prepare

STRATEGIES = ("random", "stratified", "diverse")
DEFAULT_CALIB_SIZE = 256
MANIFEST_NAME = "manifest.json"
TENSORS_NAME = "tensors.npy"
#: Side of the colour thumbnail used as the cheap embedding of the `diverse` strategy.
THUMBNAIL = 8

ImageReader = Callable[[Path], np.ndarray]


class CalibrationError(SlsgError, ValueError):
    """A calibration set that cannot be built or trusted; the message says what to change."""


@dataclass
class CalibrationSet:
    """The chosen images (in capture order of the candidates) and their prepared uint8 BGR N×H×W×3 tensors."""

    paths: list[Path]
    sha256: list[str]
    strategy: str
    seed: int
    tensors: np.ndarray
    source_count: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.tensors.shape[1]), int(self.tensors.shape[2])

    def manifest(self) -> dict:
        return {
            "strategy": self.strategy, "seed": self.seed, "n": len(self.paths),
            "source_count": self.source_count, "size": list(self.size),
            "tensors": {"file": TENSORS_NAME, "dtype": "uint8", "shape": list(self.tensors.shape),
                        "layout": "NHWC", "color": "BGR"},
            "images": [{"path": str(p), "sha256": h} for p, h in zip(self.paths, self.sha256)],
            **self.extra,
        }

    def save(self, folder: Path) -> Path:
        """Write `manifest.json` + `tensors.npy` (plain .npy, no pickle) into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / TENSORS_NAME, np.ascontiguousarray(self.tensors, dtype=np.uint8), allow_pickle=False)
        (folder / MANIFEST_NAME).write_text(json.dumps(self.manifest(), indent=2) + "\n")
        return folder


def load_calibration_set(folder: Path) -> CalibrationSet:
    """Read a stored calibration set back; refuses a manifest that does not match its tensors."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CalibrationError(f"{folder} holds no {MANIFEST_NAME}: not a calibration folder")
    m = json.loads(manifest_path.read_text())
    tensors = np.load(folder / m["tensors"]["file"], allow_pickle=False)
    if tensors.dtype != np.uint8 or list(tensors.shape) != list(m["tensors"]["shape"]):
        raise CalibrationError(f"{folder}: tensors {tensors.dtype}{list(tensors.shape)} do not match the "
                               f"manifest ({m['tensors']['shape']}); re-create the calibration set")
    images = m["images"]
    known = {"strategy", "seed", "n", "source_count", "size", "tensors", "images"}
    return CalibrationSet(paths=[Path(i["path"]) for i in images], sha256=[i["sha256"] for i in images],
                          strategy=m["strategy"], seed=int(m["seed"]), tensors=tensors,
                          source_count=int(m.get("source_count", 0)),
                          extra={k: v for k, v in m.items() if k not in known})


def _candidate_path(sample: object) -> Path:
    """A Path or any object with `.path` (and `.split`, `.label` if it has them); refuses test data."""
    path = Path(getattr(sample, "path", sample))
    split = getattr(sample, "split", None)
    label = getattr(sample, "label", "good")
    if split == "test" or (split is None and "test" in path.parts):
        raise CalibrationError(f"{path} is test data; calibration may only use good train/validation images")
    if label != "good":
        raise CalibrationError(f"{path} is labelled {label!r}; calibration may only use good images")
    return path


def read_image_file(path: Path) -> np.ndarray:
    """Decode with OpenCV (any depth/channels); `prepare` then makes it uint8 BGR at the model size."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CalibrationError(f"cannot read image {path}: missing, truncated or not an image")
    return image


def pick_random(count: int, n: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(count, size=n, replace=False).tolist())


def pick_stratified(count: int, n: int, seed: int) -> list[int]:
    """One image from each of n equal slices of capture order: slow drifts (light, wear) all covered."""
    gen = np.random.default_rng(seed)
    edges = np.linspace(0, count, n + 1)
    picks = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        start, stop = int(np.ceil(lo)), max(int(np.ceil(hi)), int(np.ceil(lo)) + 1)
        picks.append(int(gen.integers(start, min(stop, count))))
    return sorted(set(picks))


def thumbnail_embedding(image: np.ndarray) -> np.ndarray:
    """A colour thumbnail: cheap, and far enough apart for lighting, pose and product variants."""
    thumb = cv2.resize(image, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    return thumb.astype(np.float32).ravel() / 255.0


def pick_diverse(embeddings: np.ndarray, n: int, seed: int) -> list[int]:
    """k-center greedy: a seeded random start, then always the image farthest from those chosen."""
    count = embeddings.shape[0]
    first = int(np.random.default_rng(seed).integers(count))
    chosen = [first]
    dist = np.linalg.norm(embeddings - embeddings[first], axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(embeddings - embeddings[nxt], axis=1))
    return sorted(chosen)


def select_calibration_set(samples: Sequence[object], size: tuple[int, int] | int,
                           n: int = DEFAULT_CALIB_SIZE, strategy: str = "random", seed: int = 0,
                           read: ImageReader = read_image_file) -> CalibrationSet:
    """Choose min(n, len(samples)) good images by `strategy` and prepare them as the runtime would.

    `samples` are good train/validation images in capture order (Paths or objects with `.path`/`.split`);
    any test sample raises before anything is read.
    """
    if strategy not in STRATEGIES:
        raise CalibrationError(f"unknown calibration strategy {strategy!r}; "
                               f"choose one of {', '.join(STRATEGIES)}")
    if n < 1:
        raise CalibrationError(f"calibration size must be at least 1, got {n}")
    paths = [_candidate_path(s) for s in samples]
    if not paths:
        raise CalibrationError("no good train/validation images to calibrate on")
    take = min(n, len(paths))
    if take == len(paths):
        indices = list(range(len(paths)))
    elif strategy == "random":
        indices = pick_random(len(paths), take, seed)
    elif strategy == "stratified":
        indices = pick_stratified(len(paths), take, seed)
    else:
        prepared = in_order(lambda p: prepare(read(p), size), paths)
        indices = pick_diverse(np.stack([thumbnail_embedding(im) for im in prepared]), take, seed)
        return _build(paths, indices, strategy, seed, [prepared[i] for i in indices])
    return _build(paths, indices, strategy, seed, in_order(lambda i: prepare(read(paths[i]), size), indices))


def _build(paths: list[Path], indices: list[int], strategy: str, seed: int,
           images: list[np.ndarray]) -> CalibrationSet:
    chosen = [paths[i] for i in indices]
    return CalibrationSet(paths=chosen, sha256=[sha256_file(p) for p in chosen], strategy=strategy, seed=seed,
                          tensors=np.stack(images).astype(np.uint8), source_count=len(paths))
