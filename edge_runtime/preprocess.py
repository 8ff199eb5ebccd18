"""The one definition of pre-processing shared by training, export and the runtime.

Frames arrive as OpenCV gives them (uint8 BGR, H×W×3). Everything that must agree between training
and deployment — how images are made 3-channel uint8, how they are resized, how they are normalised —
lives here, in numpy/OpenCV, and the training side imports it. The ONNX graph re-implements only the
normalisation arithmetic (uint8 BGR NHWC → float RGB NCHW) with constants read from `Normalization`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.errors import SlsgError

#: Interpolation used for every resize of an image (not of a mask) anywhere in the toolkit.
RESIZE_INTERPOLATION = cv2.INTER_AREA
RESIZE_NAME = "area"


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean/std in RGB order on [0, 1] pixels; it belongs to the backbone."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


#: Model input sides must be multiples of this (the encoder halves the grid five times).
SIZE_MULTIPLE = 32


def as_hw(size) -> tuple:
    """A model size as (height, width): 256 → (256, 256); (512, 256) and [512, 256] stay (H, W)."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def parse_size(text: str) -> tuple:
    """"256" → (256, 256); "512x256" (height × width) → (512, 256); each side a positive multiple of 32.

    A tall product photographed upright keeps its aspect instead of being squashed to a square."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"size {text!r} is not N or HxW (e.g. 256 or 512x256)") from None
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2:
        raise ValueError(f"size {text!r} is not N or HxW (e.g. 256 or 512x256)")
    check_size(hw)
    return hw


def check_size(size) -> tuple:
    h, w = as_hw(size)
    for name, v in (("height", h), ("width", w)):
        if v <= 0 or v % SIZE_MULTIPLE:
            raise ValueError(f"input {name} {v} is not a positive multiple of {SIZE_MULTIPLE} (e.g. 256, 288, 512)")
    return h, w


class FrameError(SlsgError, ValueError):
    """A frame that cannot be judged: empty, wrong type or wrong shape."""


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Any image OpenCV can decode (gray, BGRA, 16-bit, float in [0,1]) → contiguous uint8 BGR H×W×3."""
    if not isinstance(image, np.ndarray):
        raise FrameError(f"frame is {type(image).__name__}, expected a numpy array")
    if image.size == 0:
        raise FrameError("frame is empty")
    img = image
    if img.dtype == np.uint16:
        img = (img / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        raise FrameError(f"frame dtype {img.dtype} is not supported (use uint8, uint16 or float in [0,1])")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise FrameError(f"frame shape {image.shape} is not an image (expected H×W, H×W×3 or H×W×4)")
    return np.ascontiguousarray(img)


def resize(image: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Resize a uint8 BGR image to (height, width); identity when it already has that size."""
    h, w = as_hw(size)
    if image.shape[0] == h and image.shape[1] == w:
        return image
    return cv2.resize(image, (w, h), interpolation=RESIZE_INTERPOLATION)


def resize_mask(mask: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Ground-truth masks resize with nearest neighbour so edges neither grow nor shrink (reference bug #20)."""
    h, w = as_hw(size)
    if mask.shape[0] == h and mask.shape[1] == w:
        return mask
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


def prepare(image: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Whatever came in → uint8 BGR at the model's size: exactly what the ONNX input `image` expects."""
    return resize(to_bgr_uint8(image), size)


def normalize(batch_bgr: np.ndarray, norm: Normalization) -> np.ndarray:
    """uint8 BGR N×H×W×3 → float32 RGB N×3×H×W normalised; the numpy twin of the in-graph arithmetic."""
    if batch_bgr.ndim == 3:
        batch_bgr = batch_bgr[None]
    x = batch_bgr[..., ::-1].astype(np.float32) / np.float32(255.0)
    mean = np.asarray(norm.mean, np.float32)
    std = np.asarray(norm.std, np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess_spec(size: tuple[int, int], norm: Normalization) -> dict:
    """What a bundle manifest records so any reader can reproduce the pre-processing."""
    return {"size": list(size), "resize": RESIZE_NAME, "color": "BGR", "layout": "NHWC", **asdict(norm)}


def bench_frame(size: tuple[int, int], image: Path | None = None, seed: int = 0) -> np.ndarray:
    """A uint8 BGR frame: the given image, or a seeded textured one (latency hardly depends on content)."""
    if image is not None:
        frame = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
        if frame is None:
            raise FileNotFoundError(f"cannot read {image} as an image: give a PNG/JPEG file")
        return to_bgr_uint8(frame)
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2)
