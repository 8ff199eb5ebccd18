"""ONNX Runtime vs PyTorch on the same uint8 frames: a broken export fails, a kNN tie flip does not.

A correct export is not bit-exact. The graph layer picks each node's k nearest neighbours with TopK, and
where two candidates are (nearly) tied, float rounding in another library can pick the other one: a few
map pixels near that node move, everything else agrees to ~1e-6. A broken export (wrong normalisation,
wrong colour order, a missing layer) moves *every* pixel and scrambles the scores. So the check looks at the
distribution of |Δ map| (the share of pixels over tolerance and the correlation of the maps), at every score
output against the spread of the scores, and at their ranking — not at the single largest pixel difference.
The defaults (`ParityLimits`) are measured on trained models; see docs/export.md.

The frames are real training/validation images of the RUN's dataset when its path is reachable, plus
synthetic anomalies made from them by the training recipe (so the scores spread and a ranking means
something); else seeded synthetic frames.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from edge_runtime.backends.base import HEAD_PREFIX, MAP_OUTPUT, SCORE_OUTPUT, Outputs, outputs_from_named
from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_runtime.preprocess import prepare
from edge_runtime.scoring import image_score
from edge_runtime.statistics import pearson, percentile, spearman
from export.run_data import RunData, synthetic_anomalies
from slsg.data.images import BadImageError, read_image
from slsg.data.loading import load_images

log = logging.getLogger(__name__)

DEFAULT_IMAGES = 8
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
#: The graph outputs of an SLSG-only DeployModel; models with more heads name theirs (`output_names`).
DEFAULT_OUTPUTS = (MAP_OUTPUT, SCORE_OUTPUT)


@dataclass(frozen=True)
class ParityLimits:
    """What a correct export looks like, measured on trained models against injected export bugs (docs/export.md,
    "Parity"; the bugs are `export/tests/export_bugs.py`). kNN tie flips are *few and small*: the faithful ResNet-18
    (40 steps on bottle) moves 2.6 % of the pixels by more than 1e-4 but none by 1e-3 (max 7.8e-4, |Δ score|
    1.7e-4); the Lite0 models move ≤ 0.03 %. Every injected bug (wrong normalisation, wrong colour order, a missing
    layer) moves ≥ 20 % of the pixels by 1e-4 and ≥ 4.5 % by 1e-3 (p99.9 ≥ 2.7e-2 on the real models, ≥ 3.8e-3 on
    tiny ones). So: at most 10 % of the pixels may differ by more than `pixel_atol`, at most 0.1 % by more than
    `rare_atol`. The map correlation alone cannot decide (a missing layer kept 0.998)."""

    pixel_atol: float = 1e-4          # a pixel "differs" when |Δ map| exceeds this ...
    max_fraction_over: float = 0.10   # ... and at most this share of the pixels may
    rare_atol: float = 2e-3           # a large difference ...
    max_fraction_rare: float = 0.001  # ... may touch at most this share (p99.9 ≤ rare_atol)
    min_map_correlation: float = 0.999
    score_atol: float = 5e-4          # |Δ score| always allowed ...
    score_rel: float = 0.01           # ... or this share of the reference scores' range, if larger
    rule_atol: float = 1e-5           # the in-graph top-k score vs edge_runtime.scoring.image_score

    def score_tolerance(self, reference: np.ndarray) -> float:
        spread = float(np.ptp(reference)) if reference.size else 0.0
        return max(self.score_atol, self.score_rel * spread)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MapParity:
    p50: float
    p99: float
    p999: float
    max: float
    fraction_over: float   # share of pixels with |Δ| > limits.pixel_atol
    fraction_rare: float   # share of pixels with |Δ| > limits.rare_atol
    correlation: float     # Pearson over all pixels of all frames


@dataclass
class ScoreParity:
    """One score output (`score`, `score_slsg`, …) of the graph against the same output in PyTorch."""

    max_abs: float
    range: float            # max − min of the PyTorch scores over the frames
    tolerance: float        # the |Δ| allowed (ParityLimits.score_tolerance)
    spearman: float
    order_kept: bool        # every pair PyTorch separates by > 2·tolerance keeps its order


@dataclass
class ParityReport:
    """The numbers printed at export and recorded in the manifest."""

    source: str                          # where the frames came from
    n_images: int
    map: MapParity
    scores: dict[str, ScoreParity]       # graph output name → its parity
    rule_output: str | None = None       # the output that must equal the shared top-k rule of the map
    rule_max_abs: float | None = None
    limits: ParityLimits = field(default_factory=ParityLimits)

    def problems(self) -> list[str]:
        lim, m, why = self.limits, self.map, []
        if not m.fraction_over <= lim.max_fraction_over:
            why.append(f"{m.fraction_over:.2%} of map pixels differ by > {lim.pixel_atol:g} (a correct export "
                       f"moves ≤ {lim.max_fraction_over:.0%}: only kNN near-ties flip)")
        if not m.fraction_rare <= lim.max_fraction_rare:
            why.append(f"{m.fraction_rare:.2%} of map pixels differ by > {lim.rare_atol:g} (tie flips are small: "
                       f"≤ {lim.max_fraction_rare:.1%} of the pixels may)")
        if not m.correlation >= lim.min_map_correlation:
            why.append(f"map correlation {m.correlation:.6f} < {lim.min_map_correlation:g}")
        for name, s in self.scores.items():
            if not s.max_abs <= s.tolerance:
                why.append(f"{name}: max |Δ| {s.max_abs:.3g} > {s.tolerance:.3g} "
                           f"(max({lim.score_atol:g}, {lim.score_rel:g} × score range {s.range:.3g}))")
            if not s.order_kept:
                why.append(f"{name}: images that PyTorch ranks clearly apart are ranked the other way")
        if self.rule_max_abs is not None and not self.rule_max_abs <= lim.rule_atol:
            why.append(f"{self.rule_output} differs from the shared top-k rule of the map by "
                       f"{self.rule_max_abs:.3g} (> {lim.rule_atol:g})")
        return why

    @property
    def ok(self) -> bool:
        return not self.problems()

    def failure(self) -> str:
        return "; ".join(self.problems())

    @property
    def max_abs_map(self) -> float:
        return self.map.max

    def to_dict(self) -> dict:
        return {"source": self.source, "n_images": self.n_images, "map": asdict(self.map),
                "scores": {k: asdict(v) for k, v in self.scores.items()}, "rule_output": self.rule_output,
                "rule_max_abs": self.rule_max_abs, "limits": self.limits.to_dict(), "ok": self.ok,
                "problems": self.problems()}


def order_kept(reference: np.ndarray, other: np.ndarray, gap: float) -> bool:
    """No pair that the reference separates by more than `gap` is ordered the other way in `other`."""
    ref, oth = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    d_ref = ref[:, None] - ref[None, :]
    d_oth = oth[:, None] - oth[None, :]
    clear = np.abs(d_ref) > gap
    return bool(np.all(np.sign(d_ref[clear]) == np.sign(d_oth[clear])))


def score_outputs(out: Outputs) -> dict[str, np.ndarray]:
    """Every score the graph gives, by its output name: `score` and one `score_<head>` per head."""
    return {SCORE_OUTPUT: out.score, **{HEAD_PREFIX + k: v for k, v in out.heads.items()}}


def rule_output(names: list[str]) -> str | None:
    """The output defined as the mean top-k of the map: `score_slsg` when the model names its heads, else
    `score` of an SLSG-only model. A fused `score` is never assumed to follow the rule."""
    if HEAD_PREFIX + "slsg" in names:
        return HEAD_PREFIX + "slsg"
    return SCORE_OUTPUT if names == [SCORE_OUTPUT] else None


def map_parity(reference: np.ndarray, other: np.ndarray, limits: ParityLimits) -> MapParity:
    diff = np.abs(reference.astype(np.float64) - other.astype(np.float64)).ravel()
    return MapParity(p50=percentile(diff, 50), p99=percentile(diff, 99), p999=percentile(diff, 99.9),
                     max=float(diff.max()), fraction_over=float(np.mean(diff > limits.pixel_atol)),
                     fraction_rare=float(np.mean(diff > limits.rare_atol)), correlation=_correlation(reference, other))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson of two map stacks; two identical constant maps agree perfectly (Pearson is undefined there)."""
    if np.array_equal(a, b):
        return 1.0
    r = pearson(a, b)
    return 0.0 if np.isnan(r) else r


def score_parity(reference: np.ndarray, other: np.ndarray, limits: ParityLimits) -> ScoreParity:
    tol = limits.score_tolerance(reference)
    rho = spearman(reference, other) if reference.size > 1 else float("nan")
    return ScoreParity(max_abs=float(np.max(np.abs(reference.astype(np.float64) - other))),
                       range=float(np.ptp(reference)), tolerance=tol, spearman=rho,
                       order_kept=order_kept(reference, other, 2 * tol))


def compare_outputs(reference: Outputs, other: Outputs, source: str,
                    limits: ParityLimits | None = None) -> ParityReport:
    """`other` (ONNX Runtime) against `reference` (PyTorch): map distribution, every score, the ranking."""
    limits = limits or ParityLimits()
    ref_scores, oth_scores = score_outputs(reference), score_outputs(other)
    missing = sorted(set(ref_scores) ^ set(oth_scores))
    if missing:
        raise ValueError(f"PyTorch and ONNX give different score outputs ({', '.join(missing)} only on one "
                         "side): the graph was exported from another model")
    names = sorted(ref_scores, key=lambda n: (n != SCORE_OUTPUT, n))
    scores = {n: score_parity(ref_scores[n], oth_scores[n], limits) for n in names}
    rule = rule_output(names)
    rule_diff = None if rule is None else float(np.max(np.abs(image_score(other.maps) - oth_scores[rule])))
    return ParityReport(source=source, n_images=len(reference), map=map_parity(reference.maps, other.maps, limits),
                        scores=scores, rule_output=rule, rule_max_abs=rule_diff, limits=limits)


# ---------------------------------------------------------------- frames


def synthetic_frames(n: int, size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    """Textured uint8 BGR frames (gradients, blobs, noise): not flat, so maps and scores spread out."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
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


def _read_folder(folder: Path, n: int, size) -> np.ndarray:
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


def _run_dataset_images(data: RunData, n: int, size) -> tuple[np.ndarray, str] | None:
    """Good train/validation images of the RUN's dataset plus half as many training-recipe anomalies."""

    samples = (data.validation + data.train)[: 4 * n]
    images, _ = load_images(samples[:: max(1, len(samples) // n)][:n], size)
    if not images:
        return None
    good = np.stack(images)
    n_bad = max(1, n // 2)
    bad = synthetic_anomalies(good, data.preset, n_bad, data.seed)
    return np.concatenate([good, bad]), (f"{len(good)} good images of {data.root} + {n_bad} training-recipe "
                                         f"anomalies made from them")


def parity_frames(size, n: int = DEFAULT_IMAGES, folder: Path | None = None,
                  data: RunData | None = None) -> tuple[np.ndarray, str]:
    """Frames for the parity check: the folder asked for, else the RUN's dataset (`data`), else synthetic."""
    if folder is not None:
        frames = _read_folder(Path(folder), n, size)
        return frames, f"{len(frames)} images of {folder}"
    if data is not None:
        found = _run_dataset_images(data, n, size)
        if found is not None:
            return found
    return synthetic_frames(n, size), f"{n} {SYNTHETIC_SOURCE}"


#: How `parity_frames` names its last resort (`synthetic_parity_hint` recognises it).
SYNTHETIC_SOURCE = "synthetic frames (the RUN's dataset is not reachable)"


def synthetic_parity_hint(source: str) -> str | None:
    """What to do when parity failed on synthetic frames, None for any other source. Frames unlike anything the
    model learnt put many pixels near a kNN tie (juice_bottle 512×256: 0.30 % of the pixels moved by > 2e-3 on
    synthetic frames, none of real ones), so the check fails a sound export; real photos of the product decide."""
    if not source.endswith(SYNTHETIC_SOURCE):
        return None
    return ("parity ran on synthetic frames because the RUN's dataset is not reachable from here, and frames unlike "
            "the product make far more pixels flip at a kNN near-tie than real ones: check it on photos of the "
            "product with --parity-images DIR (a folder of good images), or export where the RUN's dataset is "
            "reachable")


# ---------------------------------------------------------------- running both sides


def output_names(deploy) -> tuple[str, ...]:
    """The graph outputs a DeployModel gives, in order (SLSG-only models: map and score)."""
    return tuple(getattr(deploy, "output_names", DEFAULT_OUTPUTS))


def torch_outputs(deploy, frames: np.ndarray) -> Outputs:
    """DeployModel on the frames one at a time (the batch the static ONNX graph takes), as `Outputs`."""

    names, parts = output_names(deploy), []
    size = tuple(frames.shape[1:3])
    with torch.no_grad():
        for f in frames:
            values = deploy(torch.from_numpy(np.ascontiguousarray(f[None])))
            named = {n: v.float().numpy() for n, v in zip(names, values)}
            parts.append(outputs_from_named(named, 1, size))
    return Outputs.concat(parts)


def check_parity(deploy, onnx_path: Path, frames: np.ndarray, source: str, limits: ParityLimits | None = None,
                 threads: int | None = 1) -> ParityReport:
    """Compare the PyTorch DeployModel and an ONNX Runtime session of `onnx_path` on `frames`."""

    reference = torch_outputs(deploy, frames)
    backend = OnnxRuntimeBackend(Path(onnx_path), threads=threads, providers=["CPUExecutionProvider"])
    return compare_outputs(reference, backend.run(frames), source, limits)


def parity_table(report: ParityReport, title: str = "Parity: ONNX Runtime vs PyTorch"):
    """A rich table for the export command."""

    lim, m = report.limits, report.map
    t = Table(title=title)
    for col, just in (("check", "left"), ("value", "right"), ("limit", "right"), ("", "center")):
        t.add_column(col, justify=just)
    mark = {True: "[green]ok[/]", False: "[red]FAIL[/]"}
    t.add_row("frames", report.source, "", "")
    t.add_row("|Δ map| p50 / p99 / p99.9 / max", f"{m.p50:.1e} / {m.p99:.1e} / {m.p999:.1e} / {m.max:.1e}", "", "")
    t.add_row(f"pixels with |Δ map| > {lim.pixel_atol:g}", f"{m.fraction_over:.3%}", f"{lim.max_fraction_over:.0%}",
              mark[m.fraction_over <= lim.max_fraction_over])
    t.add_row(f"pixels with |Δ map| > {lim.rare_atol:g}", f"{m.fraction_rare:.3%}", f"{lim.max_fraction_rare:.1%}",
              mark[m.fraction_rare <= lim.max_fraction_rare])
    t.add_row("map correlation", f"{m.correlation:.6f}", f"{lim.min_map_correlation:g}",
              mark[m.correlation >= lim.min_map_correlation])
    for name, s in report.scores.items():
        t.add_row(f"max |Δ {name}| (score range {s.range:.3g})", f"{s.max_abs:.2e}", f"{s.tolerance:.2e}",
                  mark[s.max_abs <= s.tolerance])
        t.add_row(f"{name} ranking (Spearman {s.spearman:.4f})", "kept" if s.order_kept else "changed", "kept",
                  mark[s.order_kept])
    if report.rule_max_abs is not None:
        t.add_row(f"{report.rule_output} vs shared top-k rule", f"{report.rule_max_abs:.2e}", f"{lim.rule_atol:g}",
                  mark[report.rule_max_abs <= lim.rule_atol])
    return t
