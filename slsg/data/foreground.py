"""What kind of product the good images show: an object on a background, or a surface; and whether it moves.

Synthetic anomalies teach SLSG what a defect looks like. On an object category they must land on the object: a
blob pasted on an empty background teaches the model to flag the background, and SLSG alone then ranks real defects
below chance (DRAEM-style methods estimate a foreground mask for exactly this). On a part that is not fixtured —
it lies at another place or turns from one photo to the next — the good images themselves vary in pose, and the
training augmentations must vary it too, or every turned good part looks new.

Both facts are estimated from the good training images alone, with no setting per category:
- an image's foreground is what differs from its border's colour (the background a part lies on touches the
  border; a surface fills it): the distance to the border's median colour, split by Otsu, cleaned by morphology
  and hole filling. An image whose split is weak, or whose "foreground" fills nearly all of it, is a surface.
- the product is an object when most images have a foreground; it turns when the foregrounds' centres wander by
  more than a tenth of the object's size (it is not fixtured), when an elongated object's axis turns by more than
  10°, or when its silhouette is round (it looks the same turned 45°): whether a round part turns cannot be seen
  from its outline, and turning a good image of a round part that does not turn costs nothing. A fixtured part
  sits at the same place the same way up whatever its content — a juice bottle's fill level changes its
  foreground, not where it stands — and is trained as photographed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: The border ring whose colour is the background's, as a share of the shorter side.
BORDER = 0.04
#: A foreground smaller than this share of the image is noise; larger than the upper one is the whole image.
MIN_AREA, MAX_AREA = 0.03, 0.85
#: Otsu's split must separate the two sides by this many border spreads (MAD), or there is no object.
MIN_CONTRAST = 4.0
#: Share of the images that must show an object for the product to be one: most of them.
OBJECT_SHARE = 0.5
#: A fixtured part's centre stays within this share of its size (√area) of the median centre, in most images…
FIXED_SHIFT = 0.1
#: … and an elongated part's long axis within this many degrees of the median axis.
FIXED_TURN_DEG = 10.0
#: Elongation (ratio of the principal axes) above which an object's axis says which way it points.
ELONGATED = 1.5
#: Median IoU of a silhouette with itself turned 45° above which the part is round (a square's is 0.83).
ROUND_IOU = 0.9


def foreground_mask(image: np.ndarray) -> np.ndarray | None:
    """bool H×W: the object in a uint8 BGR image, or None when the image shows a surface (no object to find)."""
    img = np.asarray(image)
    h, w = img.shape[:2]
    ring = max(2, int(round(BORDER * min(h, w))))
    border = np.concatenate([img[:ring].reshape(-1, 3), img[-ring:].reshape(-1, 3),
                             img[:, :ring].reshape(-1, 3), img[:, -ring:].reshape(-1, 3)]).astype(np.float32)
    background = np.median(border, axis=0)
    dist = np.linalg.norm(img.astype(np.float32) - background, axis=2)
    spread = float(np.median(np.linalg.norm(border - background, axis=1))) + 1.0
    scaled = np.clip(dist * (255.0 / max(float(dist.max()), 1e-6)), 0, 255).astype(np.uint8)
    level, mask = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    cut = level * max(float(dist.max()), 1e-6) / 255.0
    if cut < MIN_CONTRAST * spread:
        return None
    k = max(3, int(round(min(h, w) / 64)) * 2 + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    mask = _fill_holes(mask)
    area = float(np.count_nonzero(mask)) / (h * w)
    if not MIN_AREA <= area <= MAX_AREA:
        return None
    return mask > 0


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """A part's inner background (an impeller's bore) is still the part: fill what the border cannot reach."""
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 255)
    holes = cv2.bitwise_not(flood)[1:-1, 1:-1]
    return cv2.bitwise_or(mask, holes)


@dataclass(frozen=True)
class ProductProfile:
    """What the good images say about the product; saved in the RUN beside the recipe it chose."""

    object: bool  # an object on a background (synthetic anomalies go on the object), else a surface
    moves: bool  # the object's place or orientation varies between good images (pose augmentation on)
    object_share: float  # images in which an object was found
    shift: float | None = None  # median distance of a foreground's centre from the median centre, per √area
    turn_deg: float | None = None  # median turn of an elongated foreground's axis from the median axis
    round: bool = False  # its silhouettes look the same turned 45°

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if not self.object:
            return (f"a surface (an object found in {self.object_share:.0%} of the good images): synthetic anomalies "
                    "anywhere, poses as photographed")
        where = f"centre shift {self.shift:.2f} of its size" + (
            f", axis turn {self.turn_deg:.0f}°" if self.turn_deg is not None else "") + (
            ", round silhouette" if self.round else "")
        pose = (f"turns ({where}): training turns the good images" if self.moves
                else f"fixtured ({where}): poses as photographed")
        return (f"an object on a background ({self.object_share:.0%} of the good images): anomalies on the object; "
                f"{pose}")


def profile_product(images: Sequence[np.ndarray], sample: int = 64, seed: int = 0) -> ProductProfile:
    """The product's profile from (a seeded sample of) its good images, all at one size."""
    if not len(images):
        raise ValueError("profiling the product needs good images")
    order = np.random.default_rng(seed).permutation(len(images))[:sample]
    masks = [foreground_mask(images[i]) for i in order]
    found = [m for m in masks if m is not None]
    share = len(found) / len(masks)
    if share < OBJECT_SHARE or len(found) < 2:
        return ProductProfile(False, False, share)
    poses = np.array([_pose(m) for m in found])  # cy, cx, √area, axis angle (rad), elongation
    centre = np.median(poses[:, :2], axis=0)
    shift = float(np.median(np.linalg.norm(poses[:, :2] - centre, axis=1) / poses[:, 2]))
    turn = None
    elongated = poses[:, 4] > ELONGATED
    if elongated.mean() > 0.5:
        axis = poses[elongated, 3]
        # axes are undirected (θ ≡ θ + π): the median of the doubled angles on the circle
        mean = 0.5 * np.arctan2(np.sin(2 * axis).mean(), np.cos(2 * axis).mean())
        diff = np.abs((axis - mean + np.pi / 2) % np.pi - np.pi / 2)
        turn = float(np.degrees(np.median(diff)))
    round_ = float(np.median([_turned_iou(m, 45.0) for m in found])) >= ROUND_IOU
    moves = shift > FIXED_SHIFT or (turn is not None and turn > FIXED_TURN_DEG) or round_
    return ProductProfile(True, bool(moves), share, shift, turn, bool(round_))


def _turned_iou(mask: np.ndarray, degrees: float) -> float:
    """IoU of a silhouette with itself turned about its centre."""
    if not mask.any():
        return 0.0
    cy, cx = _pose(mask)[:2]
    rot = cv2.getRotationMatrix2D((cx, cy), degrees, 1.0)
    turned = cv2.warpAffine(mask.astype(np.uint8), rot, mask.shape[::-1], flags=cv2.INTER_NEAREST) > 0
    return float(np.count_nonzero(turned & mask)) / max(1, np.count_nonzero(turned | mask))


def _pose(mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """(centre y, centre x, √area, long-axis angle, elongation) of a foreground, from its image moments."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    cy, cx = m["m01"] / m["m00"], m["m10"] / m["m00"]
    a, b, c = m["mu20"] / m["m00"], m["mu11"] / m["m00"], m["mu02"] / m["m00"]
    angle = 0.5 * np.arctan2(2 * b, a - c)
    root = np.sqrt(4 * b * b + (a - c) ** 2)
    elongation = np.sqrt((a + c + root) / max(a + c - root, 1e-9))
    return cy, cx, float(np.sqrt(m["m00"])), float(angle), float(elongation)


def object_region(mask: np.ndarray | None) -> np.ndarray | None:
    """Where synthetic anomalies may go on an image: its object, grown by a little (a defect on the outline is
    still on the part); None (anywhere) for an image in which no object was found."""
    if mask is None:
        return None
    k = max(3, int(round(min(mask.shape) / 32)) * 2 + 1)
    return cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0


def turn(image: np.ndarray, region: np.ndarray | None, degrees: float) -> tuple[np.ndarray, np.ndarray | None]:
    """An image (and its object region) turned about the image centre; the border colour fills the corners, as
    the background a part lies on would."""
    h, w = image.shape[:2]
    rot = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    out = cv2.warpAffine(image, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if region is None:
        return out, None
    return out, cv2.warpAffine(region.astype(np.uint8), rot, (w, h), flags=cv2.INTER_NEAREST) > 0
