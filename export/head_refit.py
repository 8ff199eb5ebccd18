"""An INT8 model file's global head, fitted again on that file's own descriptors of the training images.

The head stays float, but it pools the trunk's maps, which INT8 quantises; their error is small and systematic,
and a Mahalanobis distance multiplies it by the precision matrix. With the FP32 Gaussian, juice_bottle's INT8
models lost 0.12–0.16 AUROC on a decision that rests on this head. The Gaussian is a statistic of good images
*as the model sees them*, so each INT8 file gets its own: the same training images, the same estimator, its own
descriptors (run in ONNX Runtime), and its own normalisation in the fused score (validation images and
cross-fitted training images, as `slsg.heads.scoring` does for the RUN). Only initializers change: the graph,
its op set and its Q/DQ pattern stay exactly what the quantiser wrote (the TensorRT lint still holds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge_runtime.backends.base import HEAD_PREFIX
from slsg.heads.fusion import MIN_RELATIVE_SPREAD, HeadNorm
from slsg.heads.global_context import (
    CROSS_FIT_SEED,
    cross_fitted_distances,
    gaussian_from_descriptors,
    mahalanobis,
)

#: Initializers `slsg.inference.DeployModel` exports for the head (its module path, kept by torch.onnx).
HEAD_TENSORS = {k: f"deploy.global_head.{k}" for k in ("mean", "inv_std", "whiten")}
GLOBAL_OUTPUT = HEAD_PREFIX + "global"


@dataclass
class HeadTensors:
    """Where the head's statistics and its normalisation live in one ONNX graph."""

    descriptor: str                     # the pooled descriptor the head's first Sub reads
    location: str | None = None         # the fusion's per-head location / inverse scale vectors …
    inv_scale: str | None = None
    index: int = 0                      # … and the global head's position in them


def find_head(model: onnx.ModelProto) -> HeadTensors | None:
    """The head's tensors in `model`; None when it has no global head (an SLSG-only RUN)."""
    g = model.graph
    init = {i.name for i in g.initializer}
    if not all(name in init for name in HEAD_TENSORS.values()):
        if any(o.name == GLOBAL_OUTPUT for o in g.output):
            raise ValueError(f"the graph has {GLOBAL_OUTPUT} but not the head's initializers "
                             f"{', '.join(HEAD_TENSORS.values())}: exported by another path")
        return None
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    sub = next((n for n in consumers.get(HEAD_TENSORS["mean"], []) if n.op_type == "Sub"), None)
    if sub is None:
        raise ValueError("the global head's mean is not subtracted from a descriptor: not a graph slsg exported")
    found = HeadTensors(descriptor=next(x for x in sub.input if x != HEAD_TENSORS["mean"]))
    fusion = _fusion_of(GLOBAL_OUTPUT, consumers, init)
    if fusion is not None:
        found.location, found.inv_scale, found.index = fusion
    return found


def _fusion_of(output: str, consumers: dict, init: set[str]) -> tuple[str, str, int] | None:
    """(location, inv_scale, index) of `ScoreFusion` on `output`: Unsqueeze → Concat → Sub(location) → Mul(inv)."""
    unsq = next((n for n in consumers.get(output, []) if n.op_type == "Unsqueeze"), None)
    concat = next((n for n in consumers.get(unsq.output[0], []) if n.op_type == "Concat"), None) if unsq else None
    if concat is None:
        return None
    index = list(concat.input).index(unsq.output[0])
    sub = next((n for n in consumers.get(concat.output[0], []) if n.op_type == "Sub"), None)
    mul = next((n for n in consumers.get(sub.output[0], []) if n.op_type == "Mul"), None) if sub else None
    if mul is None:
        return None
    location = next((x for x in sub.input if x in init), None)
    inv_scale = next((x for x in mul.input if x in init), None)
    return (location, inv_scale, index) if location and inv_scale else None


def descriptor_session(model: onnx.ModelProto, tensor: str):
    """An ONNX Runtime session on a copy of the graph with `tensor` (the pooled descriptor) as an extra output."""
    from calibration.accuracy import session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    return session(probe.SerializeToString())


def descriptors(sess, tensor: str, images: np.ndarray, batch: int = 8, label: str = "descriptors") -> np.ndarray:
    """N×D: the `tensor` the probe session (`descriptor_session`) computes for each image."""
    from edge_runtime.progress import ProgressLines

    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:
        batch = fixed
    progress = ProgressLines(label, len(images), unit="image")
    out = []
    for i in range(0, len(images), batch):
        out.append(sess.run([tensor], {name: images[i:i + batch]})[0])
        progress.update(advance=len(out[-1]))
    progress.close()
    return np.concatenate(out).astype(np.float64)


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            old = numpy_helper.to_array(t)
            if old.shape != value.shape:
                raise ValueError(f"{name}: new shape {value.shape}, the graph's is {old.shape}")
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value.astype(old.dtype), name))
            return
    raise KeyError(name)


def _vector(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).copy()


def refit_head(path: Path, train: np.ndarray, validation: np.ndarray | None, estimator: str = "ledoit_wolf",
               seed: int = CROSS_FIT_SEED) -> dict | None:
    """Refit the head of the model file at `path` in place; the record for the manifest, None without a head.

    `train` are the good images the RUN's head was fitted on, `validation` its held-out good images (both uint8
    BGR at the model's input size). With too few images to cross-fit, the normalisation keeps the FP32 values.
    """
    t0 = time.perf_counter()
    model = onnx.load(str(path))
    try:
        head = find_head(model)
    except ValueError as err:
        return {"refitted": False, "reason": str(err)}
    if head is None:
        return None
    sess = descriptor_session(model, head.descriptor)  # the descriptors do not depend on the head's statistics
    x = descriptors(sess, head.descriptor, train, label=f"{path.name}: descriptors of the training images")
    stats, shrinkage, frozen = gaussian_from_descriptors(x, estimator)
    for key, name in HEAD_TENSORS.items():
        _set(model, name, np.asarray(stats[key]))
    record: dict = {"refitted": True, "n_images": int(len(x)), "estimator": estimator, "shrinkage": shrinkage,
                    "frozen_dims": frozen}
    if head.location is not None and len(x) >= 4:
        reference = [cross_fitted_distances(x, estimator, seed=seed)]
        if validation is not None and len(validation):
            val = descriptors(sess, head.descriptor, validation, label=f"{path.name}: descriptors of validation")
            reference.append(mahalanobis(stats, val))
        norm = HeadNorm.from_good_scores(np.concatenate(reference))
        location, inv_scale = _vector(model, head.location), _vector(model, head.inv_scale)
        location[head.index], inv_scale[head.index] = norm.location, 1.0 / norm.scale
        _set(model, head.location, location)
        _set(model, head.inv_scale, inv_scale)
        record["norm"] = {"location": norm.location, "scale": norm.scale, "n_good": norm.n_good,
                          "floored": norm.floored, "min_relative_spread": MIN_RELATIVE_SPREAD}
    onnx.save(model, str(path))
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return record
