"""Re-setting a bundle's thresholds from good frames on the line, with the bundle's own backend (no torch).

A threshold set on the training machine's validation images meets other light, another camera and another
batch of parts on the line. `slsg-edge threshold` scores good frames (a folder or a video) with exactly the
backend the line runs, takes the quantile of those scores for the asked false-reject rate, and writes it as
that model's threshold: the manifest is re-hashed and the values it replaces are kept in `threshold_history`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_runtime.backends import BackendError, select_backend
from edge_runtime.backends.base import model_of
from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_runtime.backends.openvino_backend import OPENVINO_PREFIX, openvino_available
from edge_runtime.backends.select import openvino_int8, openvino_int8_gated
from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.manifest import BundleError, Manifest, write_manifest
from edge_runtime.preprocess import FrameError, prepare
from edge_runtime.scoring import Threshold, threshold_from_good_scores, threshold_warning
from edge_runtime.sources.files import image_folder_items, video_file_items
from edge_runtime.sources.items import Dropped, Frame

BATCH = 8
log = logging.getLogger(__name__)


@dataclass
class GoodFrames:
    """Prepared good frames (uint8 BGR at the model size) and what happened to the rest."""

    frames: np.ndarray
    source: str
    dropped: list[str] = field(default_factory=list)


@dataclass
class NewThreshold:
    """One model's new threshold, the one it replaced, and the evidence."""

    model: str
    backend: str
    new: Threshold
    old: Threshold
    n_frames: int
    warning: str | None = None


def _items(source: Path, stop: threading.Event) -> Iterator:
    if source.is_dir():
        return image_folder_items(source, stop)
    if source.is_file():
        return video_file_items(source, False, False, stop)
    raise FileNotFoundError(f"{source} is neither a folder of good images nor a video file")


def read_good_frames(source: Path, size, every: int = 1, limit: int | None = None) -> GoodFrames:
    """Every `every`-th frame of a folder (name order) or video, up to `limit`; unreadable ones are listed."""

    source, stop = Path(source), threading.Event()
    frames, dropped, seen = [], [], 0
    for item in _items(source, stop):
        if isinstance(item, Dropped):
            dropped.append(f"{item.origin}: {item.reason}")
        if not isinstance(item, Frame):
            continue
        seen += 1
        if (seen - 1) % every:
            continue
        try:
            frames.append(prepare(item.image, size))
        except FrameError as e:
            dropped.append(f"{item.origin}: {e}")
        if limit is not None and len(frames) >= limit:
            stop.set()
            break
    if not frames:
        raise ValueError(f"no usable good frame in {source}" + (f" ({dropped[0]})" if dropped else ""))
    kind = "video" if source.is_file() else "folder"
    return GoodFrames(np.stack(frames), f"{len(frames)} good frames of {kind} {source}", dropped)


def score_frames(backend, frames: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """`score` (what the threshold applies to) of every frame, in batches the backend accepts."""
    scores = [backend.run(frames[i:i + batch]).score for i in range(0, len(frames), batch)]
    out = np.concatenate(scores).astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"the {backend.name} backend gave non-finite scores on good frames: the model or the "
                         "frames are broken; no threshold was changed")
    return out


def _bf16_backend(bundle: Bundle, threads: int | None) -> list:
    """The bf16 model's own backend, or none (its threshold is then left as it is, with a warning)."""

    try:
        return [select_backend(bundle, "openvino-bf16", threads)]
    except BackendError as e:
        log.warning("bf16 threshold not re-set: %s", e)
        return []


def _openvino_int8_backends(bundle: Bundle, threads: int | None) -> list:
    """Each INT8 file as OpenVINO was gated to run it; where OpenVINO cannot open it here, its threshold is left as
    it is, with a warning (as for bf16)."""

    gated = openvino_int8_gated(bundle)
    missed = [k for k in bundle.manifest.thresholds if k.startswith(OPENVINO_PREFIX)]
    if missed and not openvino_available():
        log.warning("%s threshold(s) not re-set: OpenVINO is not installed here (pip install 'slsg[openvino]')",
                    ", ".join(missed))
    out = []
    for model in gated:
        try:
            out.append(openvino_int8(bundle, model, threads))
        except BackendError as e:
            log.warning("%s%s threshold not re-set: %s", OPENVINO_PREFIX, model, e)
    return out


def open_backends(bundle: Bundle, names: list[str], threads: int | None = None) -> list:
    """The backends to calibrate: by `slsg-edge run --backend` name; 'all' = every model file here, and each INT8
    file OpenVINO was gated to run (its own threshold)."""

    out = []
    for name in names:
        if name == "all":
            out += [OnnxRuntimeBackend(path, threads=threads, name=f"onnx:{model}", model=model)
                    for model, path in bundle.models.items() if model != "bf16"]
            if "bf16" in bundle.models:  # bf16 is model.onnx under OpenVINO's bf16 arithmetic, not an ORT file
                out += _bf16_backend(bundle, threads)
            out += _openvino_int8_backends(bundle, threads)
        else:
            out.append(select_backend(bundle, name, threads))
    seen, unique = set(), []
    for b in out:  # one threshold per model file: the first backend named for it wins
        if b.model not in seen:
            seen.add(b.model)
            unique.append(b)
    return unique


def rethreshold(root: Path, good: GoodFrames, false_reject_rate: float | None = None,
                backends: list[str] | None = None, threads: int | None = None) -> list[NewThreshold]:
    """Score `good` with each backend, write each model's new threshold into the bundle, keep the old ones."""
    bundle = load_bundle(root)
    results = []
    for backend in open_backends(bundle, backends or ["auto"], threads):
        model = model_of(backend)
        old = bundle.threshold_for(model)
        rate = old.false_reject_rate if false_reject_rate is None else false_reject_rate
        if rate <= 0:
            rate = 0.01  # a bundle exported with --no-threshold carries rate 0: use the training default
        new = threshold_from_good_scores(score_frames(backend, good.frames), rate)
        results.append(NewThreshold(model, backend.name, new, old, len(good.frames), threshold_warning(new)))
    write_thresholds(bundle, results, good.source)
    return results


def write_thresholds(bundle: Bundle, results: list[NewThreshold], source: str) -> Manifest:
    """The new thresholds into the manifest (`thresholds`, and `threshold` for fp32), the replaced ones into
    `threshold_history`; the bundle is verified first (a damaged one is refused, not re-blessed) and after."""
    if not results:
        raise BundleError(f"no model of {bundle.root} was calibrated")
    manifest = load_bundle(bundle.root).manifest
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for r in results:
        manifest.threshold_history.append({
            "model": r.model, "replaced": when, "previous": manifest.thresholds.get(r.model, manifest.threshold),
            "by": f"slsg-edge threshold ({r.backend}) on {source}"})
        manifest.set_threshold(r.model, {**r.new.to_dict(), "source": f"slsg-edge threshold ({r.backend}) on {source}",
                                         "calibrated": when})
    manifest.thresholds.setdefault("fp32", manifest.threshold)
    out = write_manifest(bundle.root, manifest, rehash=False)
    load_bundle(bundle.root)
    return out
