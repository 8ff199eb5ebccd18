"""A LOCO-like synthetic category, `synthetic_box`: a tray with four compartments holding known items.

Good scene: red discs ×2 (top-left), blue squares ×3 (top-right), one yellow bar (bottom-left), green
pegs ×4 (bottom-right), with small position/angle jitter, lighting gradients, gain, noise and blur.
Logical anomalies break the arrangement (missing, extra, misplaced, wrong colour, wrong count);
structural ones damage the surface (scratch, dent, contamination, broken part). Defects are drawn
large and contrasted on purpose: a few CPU minutes of SLSG training should detect them.
Everything is drawn from a per-image RNG seeded by (seed, split, index), so a seed fixes every byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from slsg.data.images import write_png
from slsg.data.perlin import perlin_noise

CATEGORY = "synthetic_box"
GENERATOR_VERSION = 1

LOGICAL = ("missing_item", "extra_item", "misplaced_item", "wrong_colour", "wrong_count")
STRUCTURAL = ("scratch", "dent", "contamination", "broken_part")
DEFECTS = LOGICAL + STRUCTURAL

COLOURS = {"red": (40, 40, 200), "blue": (190, 90, 30), "yellow": (40, 200, 230), "green": (60, 170, 60)}
ODD_COLOURS = [(160, 50, 160), (0, 120, 255), (235, 235, 235), (30, 30, 30)]

# compartment → (shape, colour, size at 256 px, nominal slot centres, free slot centres), compartment coords
COMPARTMENTS = (
    ("disc", "red", 15, ((27, 30), (64, 30)), ((45, 68),)),
    ("square", "blue", 20, ((20, 42), (45, 42), (70, 42)), ((45, 76), (20, 12))),
    ("bar", "yellow", 64, ((45, 28),), ((45, 66),)),
    ("peg", "green", 9, ((24, 24), (67, 24), (24, 67), (67, 67)), ((45, 45),)),
)
BOX, WALL, CELL = 200, 6, 91


@dataclass(frozen=True)
class SynthCounts:
    train: int = 200
    validation: int = 100  # enough good images for a 1 % false-reject threshold
    test_good: int = 40
    test_logical: int = 40
    test_structural: int = 40


SMALL = SynthCounts(24, 8, 8, 8, 8)


@dataclass
class Item:
    shape: str
    colour: tuple[int, int, int]
    size: float  # radius (disc, peg), side (square), length (bar), in px at the working size
    centre: tuple[float, float]
    angle: float


@dataclass
class Scene:
    size: int
    origin: tuple[float, float]
    items: list[list[Item]] = field(default_factory=list)  # per compartment

    def cell_origin(self, c: int) -> tuple[float, float]:
        s = self.size / 256
        col, row = c % 2, c // 2
        return (self.origin[0] + (WALL + col * (BOX // 2 - WALL // 2)) * s,
                self.origin[1] + (WALL + row * (BOX // 2 - WALL // 2)) * s)

    def slot(self, c: int, local: tuple[float, float]) -> tuple[float, float]:
        ox, oy = self.cell_origin(c)
        s = self.size / 256
        return ox + local[0] * s, oy + local[1] * s


def _item_polygon(item: Item) -> np.ndarray | None:
    if item.shape == "square":
        w = h = item.size
    elif item.shape == "bar":
        w, h = item.size, item.size * 14 / 64
    else:
        return None
    box = cv2.boxPoints(((item.centre[0], item.centre[1]), (w, h), item.angle))
    return np.round(box * 16).astype(np.int32)


def draw_item(img: np.ndarray, item: Item, colour: tuple | None = None, shift: int = 4) -> None:
    """Anti-aliased item with a darker rim; coordinates carry 4 fractional bits for sub-pixel jitter."""
    colour = colour if colour is not None else item.colour
    rim = tuple(int(c * 0.6) for c in colour)
    poly = _item_polygon(item)
    if poly is None:
        c = (int(round(item.centre[0] * 16)), int(round(item.centre[1] * 16)))
        r = int(round(item.size * 16))
        cv2.circle(img, c, r, colour, -1, cv2.LINE_AA, shift)
        cv2.circle(img, c, r, rim, 2, cv2.LINE_AA, shift)
        hl = (c[0] - r // 3, c[1] - r // 3)
        cv2.circle(img, hl, max(16, r // 4), tuple(min(255, int(v * 1.3) + 30) for v in colour), -1,
                   cv2.LINE_AA, shift)
    else:
        cv2.fillPoly(img, [poly], colour, cv2.LINE_AA, shift)
        cv2.polylines(img, [poly], True, rim, 2, cv2.LINE_AA, shift)


def footprint(item: Item, size: int, grow: int = 2) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    draw_item(m, item, colour=(255,))
    m = (m > 0).astype(np.uint8)
    return cv2.dilate(m, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0 if grow else m > 0


def good_scene(size: int, rng: np.random.Generator) -> Scene:
    s = size / 256
    origin = (28 * s + rng.uniform(-4, 4) * s, 28 * s + rng.uniform(-4, 4) * s)
    scene = Scene(size, origin)
    for c, (shape, colour, sz, slots, _) in enumerate(COMPARTMENTS):
        scene.items.append([new_item(scene, c, local, shape, colour, sz, rng) for local in slots])
    return scene


def new_item(scene: Scene, c: int, local, shape: str, colour: str, sz: float, rng) -> Item:
    s = scene.size / 256
    x, y = scene.slot(c, local)
    return Item(shape, COLOURS[colour], sz * s, (x + rng.uniform(-3, 3) * s, y + rng.uniform(-3, 3) * s),
                float(rng.uniform(-8, 8)) if shape in ("square", "bar") else 0.0)


def _free_slot(scene: Scene, c: int, rng, taken: set) -> tuple[float, float] | None:
    free = [f for f in COMPARTMENTS[c][4] if (c, f) not in taken]
    if not free:
        return None
    f = free[int(rng.integers(len(free)))]
    taken.add((c, f))
    return f


def apply_logical(scene: Scene, name: str, rng: np.random.Generator, taken: set) -> np.ndarray:
    """Change the arrangement; returns the defect's mask."""
    size = scene.size
    mask = np.zeros((size, size), bool)
    occupied = [c for c in range(4) if scene.items[c]]
    c = int(rng.choice(occupied))
    shape, colour, sz, _, _ = COMPARTMENTS[c]
    if name == "missing_item":
        item = scene.items[c].pop(int(rng.integers(len(scene.items[c]))))
        mask |= footprint(item, size, 3)
    elif name == "extra_item":
        free = _free_slot(scene, c, rng, taken)
        if free is None:
            return apply_logical(scene, "missing_item", rng, taken)
        item = new_item(scene, c, free, shape, colour, sz, rng)
        scene.items[c].append(item)
        mask |= footprint(item, size)
    elif name == "misplaced_item":
        dst = int(rng.choice([d for d in range(4) if d != c]))
        free = _free_slot(scene, dst, rng, taken)
        if free is None:
            return apply_logical(scene, "missing_item", rng, taken)
        item = scene.items[c].pop(int(rng.integers(len(scene.items[c]))))
        mask |= footprint(item, size, 3)
        x, y = scene.slot(dst, free)
        moved = replace(item, centre=(x, y), angle=float(rng.uniform(-20, 20)) if shape != "disc" else 0.0)
        scene.items[dst].append(moved)
        mask |= footprint(moved, size)
    elif name == "wrong_colour":
        k = int(rng.integers(len(scene.items[c])))
        options = [v for v in (*COLOURS.values(), *ODD_COLOURS) if v != scene.items[c][k].colour]
        scene.items[c][k] = replace(scene.items[c][k], colour=options[int(rng.integers(len(options)))])
        mask |= footprint(scene.items[c][k], size)
    elif name == "wrong_count":
        if len(scene.items[c]) >= 2:
            for _ in range(2 if len(scene.items[c]) < 4 else int(rng.integers(2, 4))):
                item = scene.items[c].pop(int(rng.integers(len(scene.items[c]))))
                mask |= footprint(item, size, 3)
        else:
            scene.items[c].clear()
            ox, oy = scene.cell_origin(c)
            s = size / 256
            mask[int(oy):int(oy + CELL * s), int(ox):int(ox + CELL * s)] = True
    else:
        raise ValueError(f"unknown logical defect {name}")
    return mask


def render(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Float BGR image of the scene and the box floor mask (where structural defects may go)."""
    size, s = scene.size, scene.size / 256
    img = np.empty((size, size, 3), np.float32)
    img[:] = np.array([70, 66, 60], np.float32) + rng.uniform(-8, 8, 3)
    img += perlin_noise((size, size), (8, 8), rng)[..., None] * 6
    x0, y0 = scene.origin
    p0 = (int(round(x0 * 16)), int(round(y0 * 16)))
    p1 = (int(round((x0 + BOX * s) * 16)), int(round((y0 + BOX * s) * 16)))
    wall = (120, 160, 190)
    cv2.rectangle(img, p0, p1, wall, -1, cv2.LINE_AA, 4)
    floor_mask = np.zeros((size, size), np.uint8)
    for c in range(4):
        ox, oy = scene.cell_origin(c)
        q0 = (int(round(ox * 16)), int(round(oy * 16)))
        q1 = (int(round((ox + CELL * s) * 16)), int(round((oy + CELL * s) * 16)))
        cv2.rectangle(floor_mask, q0, q1, 1, -1, cv2.LINE_8, 4)
    floor = np.array([165, 200, 225], np.float32) + perlin_noise((size, size), (4, 4), rng)[..., None] * 10
    img = np.where(floor_mask[..., None] > 0, floor, img)
    shadow = np.zeros((size, size), np.float32)
    for items in scene.items:
        for it in items:
            moved = replace(it, centre=(it.centre[0] + 2 * s, it.centre[1] + 3 * s))
            shadow = np.maximum(shadow, footprint(moved, size, 0).astype(np.float32))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 2.0 * s)
    img *= 1.0 - 0.35 * shadow[..., None]
    for items in scene.items:
        for it in items:
            draw_item(img, it)
    return img, floor_mask > 0


def _polyline(rng, start, n: int, step: float) -> np.ndarray:
    pts = [np.array(start, np.float64)]
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(n):
        ang += rng.uniform(-0.35, 0.35)
        pts.append(pts[-1] + step * np.array([np.cos(ang), np.sin(ang)]))
    return np.round(np.array(pts) * 16).astype(np.int32)


def apply_structural(img: np.ndarray, scene: Scene, name: str, rng: np.random.Generator) -> np.ndarray:
    """Damage the rendered image in place; returns the defect's mask."""
    size, s = scene.size, scene.size / 256
    x0, y0 = scene.origin
    centre = (x0 + rng.uniform(25, BOX - 25) * s, y0 + rng.uniform(25, BOX - 25) * s)
    layer = np.zeros((size, size), np.uint8)
    if name == "scratch":
        pts = _polyline(rng, centre, 6, rng.uniform(8, 13) * s)
        cv2.polylines(layer, [pts], False, 255, max(2, int(round(2.5 * s))), cv2.LINE_AA, 4)
        tone = 245.0 if rng.random() < 0.5 else 25.0
        a = layer.astype(np.float32)[..., None] / 255
        img[:] = img * (1 - a) + tone * a
        mask = cv2.dilate((layer > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    elif name == "dent":
        axes = (int(rng.uniform(12, 20) * s), int(rng.uniform(8, 13) * s))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(layer, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 255, -1)
        ramp = np.linspace(-1, 1, size, dtype=np.float32)
        shade = 0.4 + 0.25 * (ramp[None, :] * np.cos(rng.uniform(0, 6.3)) + ramp[:, None] * 0.5)
        soft = cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), 1.5 * s)[..., None]
        img[:] = img * (1 - soft) + img * shade[..., None] * soft
        mask = layer > 0
    elif name == "contamination":
        for _ in range(int(rng.integers(3, 7))):
            c = (int(centre[0] + rng.uniform(-10, 10) * s), int(centre[1] + rng.uniform(-10, 10) * s))
            cv2.circle(layer, c, int(rng.uniform(5, 11) * s), 255, -1, cv2.LINE_AA)
        colour = np.array(ODD_COLOURS[int(rng.integers(len(ODD_COLOURS)))], np.float32)
        tex = colour + rng.normal(0, 18, img.shape).astype(np.float32)
        a = layer.astype(np.float32)[..., None] / 255
        img[:] = img * (1 - a) + tex * a
        mask = layer > 127
    elif name == "broken_part":
        items = [it for its in scene.items for it in its if it.shape != "peg"] or \
            [it for its in scene.items for it in its]
        it = items[int(rng.integers(len(items)))]
        fp = footprint(it, size, 0)
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        d = (xx - it.centre[0]) * np.cos(ang) + (yy - it.centre[1]) * np.sin(ang)
        reach = float(d[fp].max()) if fp.any() else 0.0
        jag = perlin_noise((size, size), (16, 16), rng) * 3 * s
        chunk = fp & (d + jag > reach * rng.uniform(-0.2, 0.25))
        grown = cv2.dilate(chunk.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        img[grown] = img[grown] * 0.15 + np.array([165, 200, 225], np.float32) * 0.85
        edge = cv2.morphologyEx(grown.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        img[edge & fp] *= 0.4
        mask = cv2.dilate(grown.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    else:
        raise ValueError(f"unknown structural defect {name}")
    return mask


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0.03, 0.10) * (ramp[None, :] * np.cos(ang) + ramp[:, None] * np.sin(ang))
    img = img * light[..., None] * rng.uniform(0.92, 1.08) * (1 + rng.uniform(-0.03, 0.03, 3))
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.8))
    img = img + rng.normal(0, rng.uniform(2, 4), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_image(size: int, rng: np.random.Generator, defects: tuple[str, ...] = ()) -> tuple[np.ndarray, list]:
    """uint8 BGR scene and [(defect name, bool mask)] for the defects asked for (empty for a good one)."""
    scene = good_scene(size, rng)
    out, taken = [], set()
    for name in defects:
        if name in LOGICAL:
            out.append((name, apply_logical(scene, name, rng, taken)))
    img, _ = render(scene, rng)
    for name in defects:
        if name in STRUCTURAL:
            out.append((name, apply_structural(img, scene, name, rng)))
    return photometric(img, rng), out


def defects_config() -> list[dict]:
    """MVTec LOCO's `defects_config.json` format: one entry per defect type, pixel value = its id."""
    return [{"defect_name": name, "pixel_value": i + 1, "saturation_threshold": 1.0,
             "relative_saturation": True} for i, name in enumerate(DEFECTS)]


def _rng(seed: int, split: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), split, index, GENERATOR_VERSION]))


def _pick_defects(kind: tuple[str, ...], rng: np.random.Generator) -> tuple[str, ...]:
    n = 2 if rng.random() < 0.2 else 1
    return tuple(kind[int(i)] for i in rng.choice(len(kind), size=n, replace=False))


def write_dataset(out: Path, seed: int = 0, counts: SynthCounts = SynthCounts(), size: int = 256) -> Path:
    """Write OUT/synthetic_box in the official LOCO layout; returns the category folder."""
    root = Path(out) / CATEGORY
    pixel = {e["defect_name"]: e["pixel_value"] for e in defects_config()}
    record: dict = {"generator": "slsg synth", "version": GENERATOR_VERSION, "seed": seed, "size": size,
                    "counts": counts.__dict__, "test_defects": {}}
    plan = [("train/good", counts.train, ()), ("validation/good", counts.validation, ()),
            ("test/good", counts.test_good, ()), ("test/logical_anomalies", counts.test_logical, LOGICAL),
            ("test/structural_anomalies", counts.test_structural, STRUCTURAL)]
    for split_id, (folder, n, kind) in enumerate(plan):
        for i in range(n):
            rng = _rng(seed, split_id, i)
            defects = _pick_defects(kind, rng) if kind else ()
            img, masks = make_image(size, rng, defects)
            write_png(root / folder / f"{i:03d}.png", img)
            if kind:
                label = folder.split("/")[1]
                names = []
                for k, (name, m) in enumerate(masks):
                    write_png(root / "ground_truth" / label / f"{i:03d}" / f"{k:03d}.png",
                              m.astype(np.uint8) * np.uint8(pixel[name]))
                    names.append(name)
                record["test_defects"][f"{label}/{i:03d}"] = names
    (root / "defects_config.json").write_text(json.dumps(defects_config(), indent=2) + "\n")
    (root / "generation.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return root
