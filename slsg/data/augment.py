"""Photometric and geometric operations the anomaly synthesis needs, in numpy/OpenCV.

They re-implement, with the same parameter ranges, what the reference took from torchvision
(ColorJitter, GaussianBlur), imgaug (the DRAEM texture augmenters) and albumentations (grid shuffle),
none of which is used here. Every function takes and returns uint8 BGR H×W×3 and draws from `rng`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from slsg.data.perlin import rotate

Op = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gray(x: np.ndarray) -> np.ndarray:
    """Luma of a float BGR image (ITU-R 601, as PIL's "L")."""
    return 0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2]


def _factor(rng: np.random.Generator, amount: float) -> float:
    return float(rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount))


def color_jitter(
    img: np.ndarray, rng: np.random.Generator, brightness: float = 0.0, contrast: float = 0.0,
    saturation: float = 0.0, hue: float = 0.0,
) -> np.ndarray:
    """torchvision's ColorJitter: each enabled adjustment once, in a random order."""
    x = img.astype(np.float32)
    for op in rng.permutation(4):
        if op == 0 and brightness > 0:
            x = np.clip(x * _factor(rng, brightness), 0, 255)
        elif op == 1 and contrast > 0:
            mean = float(_gray(x).mean())
            x = np.clip(mean + (x - mean) * _factor(rng, contrast), 0, 255)
        elif op == 2 and saturation > 0:
            g = _gray(x)[..., None]
            x = np.clip(g + (x - g) * _factor(rng, saturation), 0, 255)
        elif op == 3 and hue > 0:
            hsv = cv2.cvtColor(_u8(x), cv2.COLOR_BGR2HSV_FULL).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue) * 256.0) % 256.0
            x = cv2.cvtColor(_u8(hsv), cv2.COLOR_HSV2BGR_FULL).astype(np.float32)
    return _u8(x)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


# ---- the DRAEM texture augmenters (imgaug defaults), three distinct ones per texture sample ----

def gamma_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gammas = rng.uniform(0.5, 2.0, size=3)
    return _u8(255.0 * (img.astype(np.float32) / 255.0) ** gammas)


def brightness_mul_add(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    ycc[..., 0] = ycc[..., 0] * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30)
    return cv2.cvtColor(_u8(ycc), cv2.COLOR_YCrCb2BGR)


def enhance_sharpness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0
    smooth = cv2.filter2D(img.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REPLICATE)
    f = rng.uniform(0.0, 2.0)
    return _u8(smooth + f * (img.astype(np.float32) - smooth))


def hue_saturation_shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL).astype(np.float32)
    dh, ds = rng.uniform(-50, 50, size=2)
    hsv[..., 0] = (hsv[..., 0] + dh) % 256.0
    hsv[..., 1] = hsv[..., 1] + ds
    return cv2.cvtColor(_u8(hsv), cv2.COLOR_HSV2BGR_FULL)


def solarize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() >= 0.5:
        return img
    t = rng.uniform(32, 128)
    return np.where(img >= t, 255 - img, img).astype(np.uint8)


def posterize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bits = int(rng.integers(1, 9))
    keep = np.uint8((0xFF << (8 - bits)) & 0xFF)
    return img & keep


def invert(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 255 - img


def autocontrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cutoff = rng.uniform(0.0, 20.0)
    out = np.empty_like(img)
    for c in range(3):
        lo, hi = np.percentile(img[..., c], [cutoff, 100.0 - cutoff])
        if hi <= lo:
            out[..., c] = img[..., c]
        else:
            out[..., c] = _u8((img[..., c].astype(np.float32) - lo) * (255.0 / (hi - lo)))
    return out


def equalize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(img[..., c])) for c in range(3)], axis=-1)


def affine_rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rotate(img, float(rng.uniform(-45.0, 45.0)))


TEXTURE_AUGMENTERS: tuple[Op, ...] = (
    gamma_contrast, brightness_mul_add, enhance_sharpness, hue_saturation_shift, solarize,
    posterize, invert, autocontrast, equalize, affine_rotate,
)


def augment_texture(img: np.ndarray, rng: np.random.Generator, n_ops: int = 3) -> np.ndarray:
    """Three distinct augmenters from the DRAEM list, in random order (reference §2.2)."""
    for i in rng.choice(len(TEXTURE_AUGMENTERS), size=n_ops, replace=False):
        img = TEXTURE_AUGMENTERS[int(i)](img, rng)
    return img


# ---- geometric operations of the self/logical source ----

def grid_shuffle(img: np.ndarray, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Permute the rows×cols cells; cells of unequal size (uneven split) only swap with their equals. Some cells
    may stay in place (as in the reference's RandomGridShuffle), but never all of them."""
    h, w = img.shape[:2]
    ys = np.linspace(0, h, rows + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    cells = [(ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(rows) for c in range(cols)]
    out = img.copy()
    by_shape: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for cell in cells:
        by_shape.setdefault((cell[1] - cell[0], cell[3] - cell[2]), []).append(cell)
    groups = list(by_shape.values())
    orders = [rng.permutation(len(group)) for group in groups]
    if all((order == np.arange(len(order))).all() for order in orders):
        # the draw left every cell in place: a shuffle must move cells, so roll the largest group by one
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        orders[largest] = np.roll(orders[largest], 1)
    for group, order in zip(groups, orders):
        for dst, k in zip(group, order):
            src = group[int(k)]
            out[dst[0]:dst[1], dst[2]:dst[3]] = img[src[0]:src[1], src[2]:src[3]]
    return out


def copy_bands_outward(img: np.ndarray) -> np.ndarray:
    """Rows [0, ¼) ← [¼, ½) and rows [¾, 1) ← [½, ¾): the splicing_connectors band duplication."""
    h = img.shape[0]
    q = h // 4
    out = img.copy()
    out[0:q] = img[q:2 * q]
    out[h - q:h] = img[2 * q:3 * q] if h - q == 3 * q else img[h - 2 * q:h - q]
    return out
