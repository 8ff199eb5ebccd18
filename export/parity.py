"""ONNX Runtime vs PyTorch on the same uint8 frames: maps within 1e-4 and the same score ranking.

The frames are real training/validation images of the RUN's dataset when its path is reachable (a model
exported at the edge of its numeric range shows up only on real data), else seeded synthetic frames.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_runtime.preprocess import as_hw, prepare
from edge_runtime.scoring import image_score

log = logging.getLogger(__name__)

MAP_ATOL = 1e-4
#: Scores closer than this in PyTorch are ties: their order may flip on float rounding alone.
TIE_TOL = 1e-6
DEFAULT_IMAGES = 8
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class ParityReport:
    """The numbers printed at export and recorded in the manifest."""

    source: str                 # where the frames came from
    n_images: int
    max_abs_map: float
    max_abs_score: float
    max_abs_score_rule: float   # |ONNX score_slsg − edge_runtime.scoring.image_score(ONNX map)|
    ranking_equal: bool
    map_atol: float = MAP_ATOL

    @property
    def ok(self) -> bool:
        return (self.max_abs_map <= self.map_atol and self.ranking_equal
                and self.max_abs_score_rule <= self.map_atol)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def failure(self) -> str:
        why = []
        if self.max_abs_map > self.map_atol:
            why.append(f"max |map difference| {self.max_abs_map:.3g} > {self.map_atol:g}")
        if not self.ranking_equal:
            why.append("the image scores are ranked differently")
        if self.max_abs_score_rule > self.map_atol:
            why.append(f"the in-graph score differs from the shared top-k rule by "
                       f"{self.max_abs_score_rule:.3g}")
        return "; ".join(why)


def same_ranking(reference: np.ndarray, other: np.ndarray, tie_tol: float = TIE_TOL) -> bool:
    """No pair that the reference orders clearly (gap > tie_tol) is ordered the other way."""
    ref, oth = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    d_ref = ref[:, None] - ref[None, :]
    d_oth = oth[:, None] - oth[None, :]
    clear = np.abs(d_ref) > tie_tol
    return bool(np.all(np.sign(d_ref[clear]) == np.sign(d_oth[clear])))


def synthetic_frames(n: int, size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    """Textured uint8 BGR frames (gradients, blobs, noise): not flat, so maps and scores spread out."""
    rng = np.random.default_rng(seed)
    h, w = as_hw(size)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    frames = []
    for _ in range(n):
        base = np.stack([np.sin(xx * rng.uniform(2, 12) + rng.uniform(0, 6)) * np.cos(yy * rng.uniform(2, 12))
                         for _ in range(3)], axis=-1)
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.25)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)[..., None] * rng.uniform(-1, 1, 3)
        img = (base + blob) * 80 + 128 + rng.normal(0, 12, (h, w, 3))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _read_folder(folder: Path, n: int, size: int) -> np.ndarray:
    from slsg.data.images import BadImageError, read_image

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images (png, jpg, bmp, tif) under {folder}")
    step = max(1, len(files) // n)
    images = []
    for p in files[::step]:
        try:
            images.append(prepare(read_image(p), size))
        except BadImageError as e:
            log.warning("parity: skipping %s", e)
        if len(images) == n:
            break
    if not images:
        raise FileNotFoundError(f"none of the images under {folder} could be read")
    return np.stack(images)


def _run_dataset_images(data: dict, n: int, size: int) -> tuple[np.ndarray, str] | None:
    """Good train/validation images of the dataset named in RUN/config.json, if that path is reachable."""
    from slsg.data.layouts import open_dataset
    from slsg.data.loading import load_images

    root = next((data[k] for k in ("root", "path", "data") if isinstance(data.get(k), str)), None)
    if root is None or not Path(root).exists():
        return None
    try:
        cats = open_dataset(Path(root), data.get("category"))
    except Exception as e:  # a moved or reorganised dataset must not stop the export: fall back
        log.info("parity: dataset %s not usable (%s)", root, e)
        return None
    samples = [s for c in cats for s in (c.validation or []) + c.train][: 4 * n]
    images, _ = load_images(samples[:: max(1, len(samples) // n)][:n], size)
    if not images:
        return None
    return np.stack(images), f"{len(images)} good images of {root}"


def parity_frames(size: int, n: int = DEFAULT_IMAGES, folder: Path | None = None,
                  run_data: dict | None = None) -> tuple[np.ndarray, str]:
    """Frames for the parity check: the folder asked for, else the RUN's dataset, else synthetic."""
    if folder is not None:
        frames = _read_folder(Path(folder), n, size)
        return frames, f"{len(frames)} images of {folder}"
    if run_data:
        found = _run_dataset_images(run_data, n, size)
        if found is not None:
            return found
    return synthetic_frames(n, size), f"{n} synthetic frames (the RUN's dataset is not reachable)"


def torch_outputs(deploy, frames: np.ndarray):
    """DeployModel on the frames one at a time (the batch the static ONNX graph takes) → Outputs."""
    from slsg.inference import TorchPredictor

    return TorchPredictor(deploy, batch=1)(frames)


def check_parity(deploy, onnx_path: Path, frames: np.ndarray, source: str, map_atol: float = MAP_ATOL,
                 threads: int | None = 1) -> ParityReport:
    """Compare the PyTorch DeployModel and an ONNX Runtime session of `onnx_path` on `frames`."""
    from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    t = torch_outputs(deploy, frames)
    backend = OnnxRuntimeBackend(Path(onnx_path), threads=threads, providers=["CPUExecutionProvider"])
    o = backend.run(frames)
    heads = sorted(set(t.heads) & set(o.heads))
    return ParityReport(
        source=source, n_images=len(frames),
        max_abs_map=float(np.max(np.abs(t.maps - o.maps))),
        max_abs_score=float(max(np.max(np.abs(t.score - o.score)),
                                *(np.max(np.abs(t.heads[h] - o.heads[h])) for h in heads))),
        max_abs_score_rule=float(np.max(np.abs(image_score(o.maps) - o.heads.get("slsg", o.score)))),
        ranking_equal=same_ranking(t.score, o.score) and all(same_ranking(t.heads[h], o.heads[h]) for h in heads),
        map_atol=map_atol)


def parity_table(report: ParityReport, title: str = "Parity: ONNX Runtime vs PyTorch"):
    """A rich table for the export command."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("check")
    t.add_column("value", justify="right")
    t.add_column("limit", justify="right")
    t.add_column("", justify="center")
    mark = {True: "[green]ok[/]", False: "[red]FAIL[/]"}
    t.add_row("frames", report.source, "", "")
    t.add_row("max |Δ map|", f"{report.max_abs_map:.2e}", f"{report.map_atol:g}",
              mark[report.max_abs_map <= report.map_atol])
    t.add_row("max |Δ score|", f"{report.max_abs_score:.2e}", "", "")
    t.add_row("score vs shared top-k rule", f"{report.max_abs_score_rule:.2e}", f"{report.map_atol:g}",
              mark[report.max_abs_score_rule <= report.map_atol])
    t.add_row("score ranking", "same" if report.ranking_equal else "different", "same",
              mark[report.ranking_equal])
    return t
