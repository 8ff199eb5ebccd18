"""Reading images and masks from disk: every failure names the file and says what to do.

Decoding goes through OpenCV with `IMREAD_UNCHANGED` so the stored format is visible; conversion to
uint8 BGR is the shared rule `edge_runtime.preprocess.to_bgr_uint8`. A cheap structural check (PNG/JPEG
signature and end marker) catches truncated files that OpenCV would otherwise decode half-grey.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime.errors import SlsgError
from edge_runtime.preprocess import FrameError, to_bgr_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Fixed encoder parameters so the same pixels always give the same bytes.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_PNG_COLOR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


class DataError(SlsgError, ValueError):
    """Bad input data (a dataset, an image, a mask): the message says what is wrong and what to do."""


class BadImageError(DataError):
    """An image or mask file that cannot be used; the message names the file and the way out."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (hidden files ignored)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def check_file(path: Path) -> str | None:
    """Why `path` is not a complete image file, or None. Reads only the first and last bytes."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "the file is empty"
        with path.open("rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 16))
            tail = f.read(16)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    suffix = path.suffix.lower()
    if suffix == ".png":
        if not head.startswith(_PNG_SIGNATURE):
            return "it is not a PNG file although its name says so"
        if not tail.endswith(_PNG_END):
            return "the PNG is truncated (no end chunk)"
    elif suffix in (".jpg", ".jpeg"):
        if not head.startswith(b"\xff\xd8"):
            return "it is not a JPEG file although its name says so"
        if b"\xff\xd9" not in tail:
            return "the JPEG is truncated (no end marker)"
    return None


def png_color_type(path: Path) -> str | None:
    """The colour type recorded in a PNG header ("palette", "RGBA", ...), or None for other files."""
    if path.suffix.lower() != ".png":
        return None
    try:
        with path.open("rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return None
    return _PNG_COLOR_TYPES.get(head[25])


def _decode(path: Path, what: str) -> np.ndarray:
    problem = check_file(path)
    if problem is None:
        try:
            data = np.fromfile(str(path), dtype=np.uint8)
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        except (OSError, cv2.error) as e:
            img, problem = None, f"decoding failed ({e})"
        if img is None and problem is None:
            problem = "OpenCV cannot decode it"
    if problem is not None:
        raise BadImageError(
            f"{what} {path}: {problem}. Replace or re-export the file, or delete it (and its mask) "
            "to leave it out."
        )
    return img


def describe_conversion(raw: np.ndarray, path: Path) -> str | None:
    """What `to_bgr_uint8` changes about this stored image, in words; None when it is already 8-bit BGR."""
    notes = []
    if png_color_type(path) == "palette":
        notes.append("palette")
    if raw.dtype == np.uint16:
        notes.append("16-bit")
    elif raw.dtype != np.uint8:
        notes.append(str(raw.dtype))
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1):
        notes.append("grayscale")
    elif raw.ndim == 3 and raw.shape[2] == 4:
        notes.append("alpha dropped")
    return ", ".join(notes) + " → 8-bit BGR" if notes else None


def read_image_with_note(path: Path) -> tuple[np.ndarray, str | None]:
    """uint8 BGR H×W×3 and a note on the conversion applied (None when none was needed)."""
    path = Path(path)
    raw = _decode(path, "image")
    try:
        img = to_bgr_uint8(raw)
    except FrameError as e:
        raise BadImageError(f"image {path}: {e}. Convert it to 8-bit PNG or JPEG.") from e
    return img, describe_conversion(raw, path)


def read_image(path: Path) -> np.ndarray:
    """uint8 BGR H×W×3; raises BadImageError naming the file."""
    return read_image_with_note(path)[0]


def read_mask_file(path: Path) -> np.ndarray:
    """One mask PNG as uint8 H×W with its stored values (colour masks reduced to their max channel)."""
    path = Path(path)
    raw = _decode(path, "mask")
    if raw.dtype == np.uint16:
        raw = (raw > 0).astype(np.uint8) * 255 if raw.max() > 255 else raw.astype(np.uint8)
    if raw.dtype != np.uint8:
        raise BadImageError(f"mask {path}: dtype {raw.dtype} is not supported. Store masks as 8-bit PNG.")
    if raw.ndim == 3:
        raw = raw[:, :, :3].max(axis=2)
    return np.ascontiguousarray(raw)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write with fixed encoder parameters (same pixels → same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", image, PNG_PARAMS)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    path.write_bytes(buf.tobytes())
