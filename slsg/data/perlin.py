"""Single-octave 2-D Perlin noise and the rotated, thresholded Perlin masks of reference §2.3."""

from __future__ import annotations

import cv2
import numpy as np


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gradient noise on a res[0]×res[1] lattice (quintic fade, ×√2 so values span about [-1, 1]).

    `shape` must be divisible by `res`, as in DRAEM's generator the reference uses.
    """
    h, w = shape
    ry, rx = res
    if h % ry or w % rx:
        raise ValueError(f"noise shape {shape} is not divisible by lattice {res}")
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(ry + 1, rx + 1))
    gx_all = np.cos(angles).astype(np.float32)
    gy_all = np.sin(angles).astype(np.float32)
    cy, cx = h // ry, w // rx
    ty = ((np.arange(h, dtype=np.float32) % cy) / cy)[:, None]
    tx = ((np.arange(w, dtype=np.float32) % cx) / cx)[None, :]

    def corner(oy: int, ox: int) -> np.ndarray:
        gx = np.repeat(np.repeat(gx_all[oy:oy + ry, ox:ox + rx], cy, axis=0), cx, axis=1)
        gy = np.repeat(np.repeat(gy_all[oy:oy + ry, ox:ox + rx], cy, axis=0), cx, axis=1)
        return gy * (ty - oy) + gx * (tx - ox)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    uy, ux = fade(ty), fade(tx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return (np.float32(np.sqrt(2.0)) * (top * (1 - uy) + bottom * uy)).astype(np.float32)


def rotate(image: np.ndarray, degrees: float, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Rotate about the centre, constant-0 fill (the corners come out empty, as in the reference)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def perlin_mask(size: int | tuple[int, int], max_log2_scale: int, threshold: float,
                rng: np.random.Generator) -> np.ndarray:
    """bool H×W (`size` N or (H, W)): Perlin noise at scales 2^U{0..max} per axis, rotated ±90°, thresholded."""
    shape = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    sy = 2 ** int(rng.integers(0, max_log2_scale + 1))
    sx = 2 ** int(rng.integers(0, max_log2_scale + 1))
    noise = perlin_noise(shape, (sy, sx), rng)
    noise = rotate(noise, float(rng.uniform(-90.0, 90.0)))
    return noise > threshold
