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
from pathlib import Path

import numpy as np
import onnx

from edge_runtime.backends.refitted_head import put_initializers, save_head
from edge_runtime.heads.graph import (
    HEAD_TENSORS,
    LOCAL_MEMORY,
    Describer,
    HeadTensors,
    descriptors,
    find_head,
    initializer,
    onnxruntime_describer,
    openvino_describer,
)
from edge_runtime.heads.memory import image_scores, memory_columns
from slsg.heads.fusion import MIN_RELATIVE_SPREAD, HeadNorm
from slsg.heads.global_context import (
    CROSS_FIT_SEED,
    cross_fitted_distances,
    gaussian_from_descriptors,
    mahalanobis,
)
from slsg.heads.local_patch import LocalHeadConfig, choose_memory


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
    val_seen = None
    if head.location is not None and validation is not None and len(validation):  # only the fusion needs them
        val_seen = descriptors(describe, validation, head, f"{label}: {describe.library} descriptors of validation")
    training = describe.for_training(validation if val_seen is not None else train)
    seen = descriptors(training, train, head,
                       f"{label}: {training.library} descriptors of the training images ({training.part})")
    x = seen.descriptors
    stats, shrinkage, frozen = gaussian_from_descriptors(x, estimator)
    tensors = {name: np.asarray(stats[key]) for key, name in HEAD_TENSORS.items()}
    record: dict = {"refitted": True, "library": describe.library, "training_images_through": training.part,
                    "n_images": int(len(x)), "estimator": estimator, "shrinkage": shrinkage, "frozen_dims": frozen}
    if head.location is not None and len(x) >= 4:
        reference = [cross_fitted_distances(x, estimator, seed=seed)]
        if val_seen is not None:
            reference.append(mahalanobis(stats, val_seen.descriptors))
        norm = HeadNorm.from_good_scores(np.concatenate(reference))
        location, inv_scale = initializer(model, head.location), initializer(model, head.inv_scale)
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
        if head.slsg_index is not None and val_seen is not None and "slsg" in val_seen.heads:
            slsg_norm = HeadNorm.from_good_scores(val_seen.heads["slsg"])  # as the RUN's: its validation images only
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
               seed: int = CROSS_FIT_SEED, local: LocalHeadConfig | None = None,
               as_written: bool = False) -> dict | None:
    """Refit the head of the model file at `path` in place on ONNX Runtime's descriptors (`as_written`: of the file
    as written, `onnxruntime_backend.AS_WRITTEN`); the record for the manifest, None without a head.

    `train` are the good images the RUN's head was fitted on, `validation` its held-out good images (both uint8
    BGR at the model's input size)."""
    model = onnx.load(str(path))
    head, refused = _head_of(model)
    if head is None:
        return refused
    tensors, record = fit_head(model, head, onnxruntime_describer(model, head, as_written), train, validation,
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
