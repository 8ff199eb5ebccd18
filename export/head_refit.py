"""An INT8 model file's global head (or bf16's), fitted again on that model's own descriptors of the training images.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from calibration.accuracy import session
from edge_runtime.backends.base import HEAD_PREFIX
from edge_runtime.backends.openvino_backend import INFERENCE_PRECISION, as_openvino_runs_it, compile_cpu
from edge_runtime.backends.refitted_head import put_initializers, save_head
from edge_runtime.progress import ProgressLines
from slsg.heads.fusion import MIN_RELATIVE_SPREAD, HeadNorm
from slsg.heads.global_context import (
    CROSS_FIT_SEED,
    cross_fitted_distances,
    gaussian_from_descriptors,
    mahalanobis,
)
from slsg.heads.local_patch import LocalHeadConfig, choose_memory, image_scores, memory_columns

#: Initializers `slsg.inference.DeployModel` exports for the head (its module path, kept by torch.onnx).
HEAD_TENSORS = {k: f"deploy.global_head.{k}" for k in ("mean", "inv_std", "whiten")}
GLOBAL_OUTPUT = HEAD_PREFIX + "global"
LOCAL_OUTPUT = HEAD_PREFIX + "local"
SLSG_OUTPUT = HEAD_PREFIX + "slsg"
LOCAL_MEMORY = "deploy.local_head.memory"  # the (D+1)×M columns `slsg.heads.local_patch.memory_columns` makes


@dataclass
class HeadTensors:
    """Where the head's statistics and its normalisation live in one ONNX graph."""

    descriptor: str                     # the pooled descriptor the head's first Sub reads
    location: str | None = None         # the fusion's per-head location / inverse scale vectors …
    inv_scale: str | None = None
    index: int = 0                      # … and the global head's position in them
    local_index: int | None = None      # the local head's position in the same vectors, when it is fused
    local_patches: str | None = None    # the patches (with a 1 appended) the local head's search multiplies
    slsg_index: int | None = None       # SLSG's position in the fusion vectors


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
        local = _fusion_of(LOCAL_OUTPUT, consumers, init)
        search = next((n for n in consumers.get(LOCAL_MEMORY, []) if n.op_type == "MatMul"), None)
        if local is not None and local[:2] == fusion[:2] and search is not None:
            found.local_index, found.local_patches = local[2], search.input[0]
        slsg = _fusion_of(SLSG_OUTPUT, consumers, init)
        if slsg is not None and slsg[:2] == fusion[:2]:
            found.slsg_index = slsg[2]
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


@dataclass
class Describer:
    """One library's way of computing what the heads' refit needs — `run(batch) -> {tensor: value}` for the
    descriptor, the local head's N×P×(D'+1) patches and SLSG's score — with the batch size it takes."""

    run: Callable[[np.ndarray], dict[str, np.ndarray]]
    batch: int = 8
    library: str = "ONNX Runtime"


def _probe(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of the whole graph with `tensors` (the pooled descriptor, the local head's patches) as extra outputs.

    The whole graph, not the trunk alone: ONNX Runtime fuses a Q/DQ graph around what it must compute, and on the
    symmetric INT8 file the trunk cut out on its own gave other descriptors than the file does (juice_bottle
    512×256: up to 17.7 against a mean magnitude of 3.2), so a head fitted on them would not fit the file."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for tensor in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    return probe


def _seen(head: HeadTensors) -> list[str]:
    return ([head.descriptor] + ([head.local_patches] if head.local_patches else [])
            + ([SLSG_OUTPUT] if head.slsg_index is not None else []))


def onnxruntime_describer(model: onnx.ModelProto, head: HeadTensors) -> Describer:
    wanted = _seen(head)
    sess = session(_probe(model, wanted).SerializeToString())
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(wanted, sess.run(wanted, {name: batch})))

    return Describer(run, fixed if isinstance(fixed, int) and fixed > 0 else 8)


def openvino_describer(model: onnx.ModelProto, head: HeadTensors, precision: str = "int8") -> Describer:
    """What `edge_runtime.backends.OpenVinoBackend` computes at `precision` (int8: an INT8 file, the same in-memory
    edits and f32 hint; bf16: model.onnx in bf16 arithmetic), one image at a time as the line runs it."""
    wanted = _seen(head)
    probe = _probe(model, wanted)
    as_openvino_runs_it(probe, precision)
    request = compile_cpu(probe.SerializeToString(),
                          {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision]}).create_infer_request()

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        request.infer({"image": batch})
        return {t: np.array(request.get_tensor(t).data, copy=True) for t in wanted}

    return Describer(run, 1, "OpenVINO" if precision == "int8" else f"OpenVINO {precision}")


@dataclass
class Seen:
    """What the refit sees of some images: descriptors N×D, the local head's patch rows (N·P)×D', SLSG's scores."""

    descriptors: np.ndarray
    rows: np.ndarray | None
    per_image: int = 0
    slsg: np.ndarray | None = None


def descriptors(describe: Describer, images: np.ndarray, head: HeadTensors, label: str = "descriptors") -> Seen:
    """What `describe` computes for each image (the local head's patches without their appended 1)."""
    progress = ProgressLines(label, len(images), unit="image")
    out, rows, slsg, per_image = [], [], [], 0
    for i in range(0, len(images), describe.batch):
        got = describe.run(images[i:i + describe.batch])
        out.append(got[head.descriptor])
        if head.local_patches in got:
            patches = got[head.local_patches]
            per_image = patches.shape[1]
            rows.append(patches[..., :-1].reshape(-1, patches.shape[2] - 1).astype(np.float32))
        if SLSG_OUTPUT in got:
            slsg.append(np.ravel(got[SLSG_OUTPUT]))
        progress.update(advance=len(out[-1]))
    progress.close()
    return Seen(np.concatenate(out).astype(np.float64), np.concatenate(rows) if rows else None, per_image,
                np.concatenate(slsg) if slsg else None)


def _vector(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).copy()


def fit_head(model: onnx.ModelProto, head: HeadTensors, describe: Describer, train: np.ndarray,
             validation: np.ndarray | None, estimator: str = "ledoit_wolf", seed: int = CROSS_FIT_SEED,
             label: str = "model", local: LocalHeadConfig | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(initializer name → new value, the record for the manifest): the head's Gaussian and its normalisation in
    the fused score, fitted on the descriptors `describe` computes. With too few images to cross-fit, the
    normalisation keeps the model's values.

    With `local` (the RUN's local-head configuration) the local head's memory is chosen again from this file's own
    patches of the same training images, and normalised on its own validation scores: quantised features are far
    from FP32's memory, and not the same distance for every image (juice_bottle 512×256: the u8 file's local scores
    doubled and did not follow FP32's image by image, r −0.35; its fused AUROC fell to 0.80 with a global head fitted
    to it). SLSG's place in the fused score is set again from this file's own scores of the validation images, as
    the RUN set FP32's: quantisation shifts SLSG's scores too, and the max rule lets a shifted head win."""
    t0 = time.perf_counter()
    seen = descriptors(describe, train, head, f"{label}: {describe.library} descriptors of the training images")
    x = seen.descriptors
    stats, shrinkage, frozen = gaussian_from_descriptors(x, estimator)
    tensors = {name: np.asarray(stats[key]) for key, name in HEAD_TENSORS.items()}
    record: dict = {"refitted": True, "library": describe.library, "n_images": int(len(x)), "estimator": estimator,
                    "shrinkage": shrinkage, "frozen_dims": frozen}
    if head.location is not None and len(x) >= 4:
        reference, val_seen = [cross_fitted_distances(x, estimator, seed=seed)], None
        if validation is not None and len(validation):
            val_seen = descriptors(describe, validation, head, f"{label}: {describe.library} descriptors of validation")
            reference.append(mahalanobis(stats, val_seen.descriptors))
        norm = HeadNorm.from_good_scores(np.concatenate(reference))
        location, inv_scale = _vector(model, head.location), _vector(model, head.inv_scale)
        location[head.index], inv_scale[head.index] = norm.location, 1.0 / norm.scale
        tensors[head.location], tensors[head.inv_scale] = location, inv_scale
        record["norm"] = {"location": norm.location, "scale": norm.scale, "n_good": norm.n_good,
                          "floored": norm.floored, "min_relative_spread": MIN_RELATIVE_SPREAD}
        if local is not None and head.local_index is not None and seen.rows is not None and val_seen is not None:
            fit = choose_memory(seen.rows, local)
            tensors[LOCAL_MEMORY] = memory_columns(fit.memory)
            own = image_scores(fit.memory, val_seen.rows, val_seen.per_image)
            local_norm = HeadNorm.from_good_scores(own)
            location[head.local_index], inv_scale[head.local_index] = local_norm.location, 1.0 / local_norm.scale
            record["local"] = {**fit.report(), "norm": _norm_record(local_norm)}
        if head.slsg_index is not None and val_seen is not None and val_seen.slsg is not None:
            slsg_norm = HeadNorm.from_good_scores(val_seen.slsg)  # as the RUN's: its validation images only
            location[head.slsg_index], inv_scale[head.slsg_index] = slsg_norm.location, 1.0 / slsg_norm.scale
            record["slsg_norm"] = _norm_record(slsg_norm)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return tensors, record


def _norm_record(norm: HeadNorm) -> dict:
    return {"location": norm.location, "scale": norm.scale, "n_good": norm.n_good, "floored": norm.floored}


def _head_of(model: onnx.ModelProto) -> tuple[HeadTensors | None, dict | None]:
    try:
        return find_head(model), None
    except ValueError as err:
        return None, {"refitted": False, "reason": str(err)}


def refit_head(path: Path, train: np.ndarray, validation: np.ndarray | None, estimator: str = "ledoit_wolf",
               seed: int = CROSS_FIT_SEED, local: LocalHeadConfig | None = None) -> dict | None:
    """Refit the head of the model file at `path` in place on ONNX Runtime's descriptors; the record for the
    manifest, None without a head.

    `train` are the good images the RUN's head was fitted on, `validation` its held-out good images (both uint8
    BGR at the model's input size)."""
    model = onnx.load(str(path))
    head, refused = _head_of(model)
    if head is None:
        return refused
    tensors, record = fit_head(model, head, onnxruntime_describer(model, head), train, validation,
                               estimator, seed, path.name, local)
    put_initializers(model, tensors, path)
    onnx.save(model, str(path))
    return record


def refit_head_for_openvino(path: Path, out: Path, train: np.ndarray, validation: np.ndarray | None,
                            estimator: str = "ledoit_wolf", seed: int = CROSS_FIT_SEED,
                            precision: str = "int8", local: LocalHeadConfig | None = None) -> dict | None:
    """The head of the model file at `path` fitted on OpenVINO's descriptors at `precision` (an INT8 file, or
    model.onnx in bf16), written to `out` (`edge_runtime.backends.refitted_head`); the file itself is untouched.
    None without a head."""

    model = onnx.load(str(path))
    head, refused = _head_of(model)
    if head is None:
        return refused
    describer = openvino_describer(model, head, precision)
    tensors, record = fit_head(model, head, describer, train, validation, estimator, seed,
                               f"{path.name} ({describer.library})", local)
    save_head(out, tensors)
    return record
