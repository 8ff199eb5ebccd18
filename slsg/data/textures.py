"""Texture sources for the anomaly synthesis: image files from a folder (e.g. DTD) or procedural ones.

The reference draws a random DTD image; DTD is not shipped, so without a folder a texture is drawn
from a few procedural families (stripes, checks, cloud noise, blobs, scribbles, marble) in random colours.
Either way the DRAEM photometric augmenters are applied afterwards (see `augment.augment_texture`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from slsg.data.augment import augment_texture
from slsg.data.images import IMAGE_SUFFIXES, BadImageError, read_image
from slsg.data.perlin import perlin_noise, rotate


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3)).astype(np.float32)


def _ramp(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map t in [0,1] to a two-colour gradient."""
    a, b = _colours(rng, 2)
    return a + (b - a) * t[..., None]


def stripes(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    period = rng.uniform(4, size / 4)
    t = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
    return _ramp(t, rng)


def checks(size: int, rng: np.random.Generator) -> np.ndarray:
    cell = int(rng.integers(4, max(5, size // 6)))
    yy, xx = np.mgrid[0:size, 0:size]
    t = ((yy // cell + xx // cell) % 2).astype(np.float32)
    return rotate(_ramp(t, rng).astype(np.float32), float(rng.uniform(-45, 45)), cv2.INTER_NEAREST)


def clouds(size: int, rng: np.random.Generator) -> np.ndarray:
    t = np.zeros((size, size), np.float32)
    for octave, res in enumerate((2, 4, 8, 16)):
        if size % res == 0:
            t += perlin_noise((size, size), (res, res), rng) / (2 ** octave)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return _ramp(t, rng)


def blobs(size: int, rng: np.random.Generator) -> np.ndarray:
    img = np.full((size, size, 3), _colours(rng, 1)[0], np.float32)
    for _ in range(int(rng.integers(10, 60))):
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(2, max(3, size // 10)))
        cv2.circle(img, c, r, _colours(rng, 1)[0].tolist(), -1)
    return img


def scribbles(size: int, rng: np.random.Generator) -> np.ndarray:
    img = np.full((size, size, 3), _colours(rng, 1)[0], np.float32)
    for _ in range(int(rng.integers(10, 50))):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(img, p1, p2, _colours(rng, 1)[0].tolist(), int(rng.integers(1, 5)))
    return img


def marble(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    turb = perlin_noise((size, size), (4, 4), rng) * rng.uniform(2, 8)
    t = 0.5 + 0.5 * np.sin(xx * rng.uniform(0.02, 0.2) + yy * rng.uniform(0.0, 0.1) + turb)
    return _ramp(t, rng)


PROCEDURAL = (stripes, checks, clouds, blobs, scribbles, marble)


def procedural_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    fn = PROCEDURAL[int(rng.integers(len(PROCEDURAL)))]
    img = fn(size, rng)
    img = img + rng.normal(0, rng.uniform(0, 12), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


class TextureSource:
    """Draws an augmented H×W uint8 BGR texture (`size` N or (H, W)); files are read on demand (cheap to pickle)."""

    def __init__(self, size: int | tuple[int, int], folder: Path | None = None):
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.folder = Path(folder) if folder is not None else None
        self.files: list[Path] = []
        if self.folder is not None:
            if not self.folder.is_dir():
                raise FileNotFoundError(
                    f"texture folder {self.folder} does not exist. Pass a folder of texture images "
                    "(e.g. dtd/images) or leave it out for procedural ones.")
            self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise FileNotFoundError(f"texture folder {self.folder} holds no images (.png/.jpg/...).")
        self._bad: set[Path] = set()

    def _read(self, rng: np.random.Generator) -> np.ndarray | None:
        for _ in range(8):
            path = self.files[int(rng.integers(len(self.files)))]
            if path in self._bad:
                continue
            try:
                img = read_image(path)
            except BadImageError as e:
                self._bad.add(path)
                warnings.warn(f"texture skipped: {e}", stacklevel=2)
                continue
            return cv2.resize(img, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
        return None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        img = self._read(rng) if self.files else None
        if img is None:
            h, w = self.size
            img = procedural_texture(max(h, w), rng)
            if (h, w) != img.shape[:2]:
                img = np.ascontiguousarray(img[:h, :w])  # a crop keeps the texture's scale
        return augment_texture(img, rng)
