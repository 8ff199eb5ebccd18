"""The fitted heads of every model file in a bundle, updated with confirmed-good frames, torch-free.

First the statistics (`heads.update`: the Gaussian and the patch memory take the frames in), then the normalisation
(`relaxed_norms`: a head that still calls a confirmed-good frame bad gets a wider scale). Each model file computes
its own descriptors and patches (an INT8 file's are not FP32's), so each is updated from what *it* computes of the
frames — in ONNX Runtime for the files themselves, in OpenVINO for the heads export fitted to OpenVINO's arithmetic
(`heads/openvino.*.npz`, `heads/bf16.npz`). Only initializers change, as at export: the graphs, their op sets and
Q/DQ patterns stay what was gated and linted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN
from edge_runtime.backends.openvino_backend import OPENVINO_PREFIX, openvino_available
from edge_runtime.backends.refitted_head import put_initializers, read_head, save_head
from edge_runtime.bundle import Bundle
from edge_runtime.heads.graph import (
    HEAD_TENSORS,
    LOCAL_MEMORY,
    Describer,
    HeadTensors,
    Seen,
    descriptors,
    find_head,
    initializer,
    onnxruntime_describer,
    openvino_describer,
)
from edge_runtime.heads.update import extended_memory, pooled_gaussian
from edge_runtime.manifest import Manifest
from edge_runtime.optional import onnx

#: when a bundle does not say how many training images its heads were fitted on
DEFAULT_REFERENCE = 100


@dataclass
class HeadUpdate:
    """New initializers for one file (a model, or a head file OpenVINO reads), and what changed."""

    target: str                   # bundle-relative file
    tensors: dict
    record: dict = field(default_factory=dict)


def reference_images(manifest: Manifest) -> int:
    """How many good images the heads' statistics rest on: the RUN's training images."""
    fingerprint = manifest.data_fingerprint
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("n_images"), int):
        return int(fingerprint["n_images"])
    return int(manifest.score_norms.get("global", {}).get("n_good", DEFAULT_REFERENCE))


def local_settings(manifest: Manifest) -> tuple[int, int]:
    """(projection, seed) the local head's coreset was chosen with."""
    patches = manifest.scores.get("score_local", {}).get("patches", {})
    return int(patches.get("projection", 64)), int(patches.get("seed", 0))


#: the worst confirmed-good frame lands this far below the threshold when its head is relaxed: another frame of the
#: same part in the same light scores a little differently
MARGIN = 0.1


def _statistics(model: onnx.ModelProto, head: HeadTensors, seen: Seen, n_reference: int,
                local: tuple[int, int]) -> tuple[dict, dict]:
    """The Gaussian and the memory with the frames pooled in (`heads.update`)."""
    stats = pooled_gaussian({k: initializer(model, name) for k, name in HEAD_TENSORS.items()}, seen.descriptors,
                            n_reference)
    tensors = {name: stats[k] for k, name in HEAD_TENSORS.items()}
    record: dict = {"reference_images": n_reference}
    if head.local_patches is not None and seen.rows is not None:
        tensors[LOCAL_MEMORY], record["local"] = extended_memory(initializer(model, LOCAL_MEMORY), seen.rows, *local)
    return tensors, record


def relaxed_norms(model: onnx.ModelProto, head: HeadTensors, scores: dict, threshold: float,
                  margin: float = MARGIN) -> tuple[dict, dict]:
    """(initializers, {head: {scale before, after}}): each head whose own normalised score puts a confirmed-good
    frame over `threshold` gets a wider scale, just enough to put the worst one `margin` below it; the other heads
    keep theirs. Under the max rule the fused score is the largest normalised head score, so the head that called
    these parts bad is the one that learns they are good, and a defect another head sees stays as visible."""
    if head.location is None:
        return {}, {}
    location, inv_scale = initializer(model, head.location), initializer(model, head.inv_scale)
    changed = {}
    target = threshold * (1.0 - margin)
    for name, index in (("global", head.index), ("local", head.local_index), ("slsg", head.slsg_index)):
        if index is None or name not in scores or target <= 0:
            continue
        excess = float(np.max(scores[name])) - float(location[index])
        if excess > 0 and excess * float(inv_scale[index]) > target:
            before = 1.0 / float(inv_scale[index])
            inv_scale[index] = target / excess
            changed[name] = {"scale_before": before, "scale_after": excess / target}
    return ({head.inv_scale: inv_scale}, changed) if changed else ({}, {})


def _refit(model: onnx.ModelProto, head: HeadTensors, describer: Callable[[onnx.ModelProto], Describer],
           frames: np.ndarray, n_reference: int, local: tuple[int, int], threshold: float, rule: str,
           label: str) -> tuple[dict, dict]:
    """Statistics first, then the normalisation the updated heads need; the model is updated in place."""
    describe = describer(model)
    seen = descriptors(describe, frames, head, f"{label}: {describe.library} features of the confirmed-good frames")
    tensors, record = _statistics(model, head, seen, n_reference, local)
    record = {"library": describe.library, "frames": int(len(frames)), **record}
    put_initializers(model, tensors, Path(label))
    if rule == "max":
        after = descriptors(describer(model), frames, head, f"{label}: the updated heads' scores")
        norms, record["norms"] = relaxed_norms(model, head, after.heads, threshold)
        tensors.update(norms)
    return tensors, record


def head_updates(bundle: Bundle, frames: np.ndarray) -> tuple[list[HeadUpdate], list[str]]:
    """The updates for every file of `bundle` that holds fitted heads, and what could not be updated here."""
    manifest = bundle.manifest
    n_reference, local = reference_images(manifest), local_settings(manifest)
    rule = str(manifest.scores.get("score", {}).get("rule", "max"))
    updates: list[HeadUpdate] = []
    skipped: list[str] = [] if rule == "max" else [
        f"the fused score's {rule} rule: the heads' normalisation is kept; the threshold passes the confirmed goods"]
    done: set[Path] = set()
    for key, path in bundle.models.items():
        if path in done or key == "bf16":  # bf16 is model.onnx under OpenVINO's arithmetic: its head file below
            continue
        done.add(path)
        model = onnx.load(str(path))
        try:
            head = find_head(model)
        except ValueError as e:  # a graph slsg did not export: its heads are left as they are, and the report says so
            skipped.append(f"{path.name}: head statistics not updated: {e}")
            continue
        if head is not None:
            updates.append(HeadUpdate(path.name, *_refit(
                model, head, lambda m, h=head, w=key in AS_WRITTEN: onnxruntime_describer(m, h, w), frames,
                n_reference, local, bundle.threshold_for(key).value, rule, path.name)))
    for key, name in manifest.heads.items():
        if not openvino_available():
            skipped.append(f"{name} (the heads {key} runs with) not updated: OpenVINO is not installed here, so "
                           f"{key} keeps the statistics it had")
            continue
        source = bundle.models["fp32" if key == "bf16" else key[len(OPENVINO_PREFIX):]]
        model = onnx.load(str(source))
        stored = read_head(bundle.root / name)
        put_initializers(model, stored, bundle.root / name)
        head = find_head(model)
        precision = "bf16" if key == "bf16" else "int8"
        tensors, record = _refit(model, head, lambda m, h=head, p=precision: openvino_describer(m, h, p), frames,
                                 n_reference, local, bundle.threshold_for(key).value, rule, f"{source.name} ({key})")
        updates.append(HeadUpdate(name, {k: v for k, v in tensors.items() if k in stored}, record))
    return updates, skipped


def write_updates(folder: Path, updates: list[HeadUpdate]) -> None:
    """Write each update into `folder` (a new version being made): files are replaced, never written into (they
    are hard links to the parent version's)."""
    for u in updates:
        target = folder / u.target
        if target.suffix == ".npz":
            tensors = {**read_head(target), **u.tensors}
            target.unlink()
            save_head(target, tensors)
            continue
        model = onnx.load(str(target))
        put_initializers(model, u.tensors, target)
        target.unlink()
        onnx.save(model, str(target))
