"""An INT8 model file's global head (or bf16's), fitted again on that model's own descriptors of the training images.

The head stays float, but it pools the trunk's maps, which INT8 quantises; their error is small and systematic,
and a Mahalanobis distance multiplies it by the precision matrix. With the FP32 Gaussian, juice_bottle's INT8
models lost 0.12–0.16 AUROC on a decision that rests on this head. The Gaussian is a statistic of good images
*as the model sees them*, so each INT8 file gets its own: the same training images, the same estimator, its own
descriptors (run in ONNX Runtime), and its own normalisation in the fused score (validation images and
cross-fitted training images, as `slsg.heads.scoring` does for the RUN). Only initializers change: the graph,
its op set and its Q/DQ pattern stay exactly what the quantiser wrote (the TensorRT lint still holds).

One pass of the file over the gate's images (goods first, then anomalies) serves both the refit and the gate
(`Probe`): the goods' descriptors set the normalisation, and since a refit changes only what the heads compute from
the trunk, the refitted file's outputs on every gate image follow from that same pass (`refitted_outputs`). That
is checked on a few images run through the refitted file; where it does not hold, the gate runs the file itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from calibration.accuracy import run_backend, run_model
from calibration.bundle import Adjusted
from edge_runtime.backends.base import Outputs, close_backend
from edge_runtime.backends.openvino_backend import OpenVinoBackend
from edge_runtime.backends.refitted_head import put_initializers, save_head
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
from edge_runtime.heads.memory import image_scores, memory_columns, memory_rows
from slsg.heads.fusion import MIN_RELATIVE_SPREAD, FusionConfig, HeadNorm, fuse_numpy
from slsg.heads.global_context import (
    CROSS_FIT_SEED,
    cross_fitted_distances,
    gaussian_from_descriptors,
    mahalanobis,
)
from slsg.heads.local_patch import LocalHeadConfig, choose_memory

#: gate images run through each refitted file to check the outputs `refitted_outputs` gives for all of them
CHECKED_IMAGES = 4
#: OpenVINO precisions whose refit pass (the graph with the heads' inputs as extra outputs) computes what the line
#: computes: in f32 arithmetic the extra outputs change nothing (INT8 files: the same map r to 15 digits on
#: juice_bottle); in bf16 they move where OpenVINO rounds (map r 0.9845 against 0.9851 as the line runs it), so bf16's
#: map rule and gate run bf16 as the line does.
PROBE_RUNS_AS_THE_LINE = frozenset({"int8"})
#: how far the checked outputs may stand from the file's, relative and absolute, on each score and on the maps: the
#: graph computes the Mahalanobis distance in float32 through a whitening matrix fitted on a few hundred images, the
#: twin in float64 (they differed by up to 2.4e-4 of the distance on a test model fitted on 16 images, about what
#: ONNX Runtime and OpenVINO differ by on the same file)
CHECK_TOLERANCE = 1e-3


@dataclass
class Probe:
    """What one library computes of a model file on the gate's images before its heads are refitted: descriptors,
    patches, SLSG's score and map (`edge_runtime.heads.graph.descriptors`), the first `n_good` of them good."""

    model: onnx.ModelProto
    head: HeadTensors
    describe: Describer
    seen: Seen
    n_good: int

    @property
    def validation(self) -> Seen:
        return self.seen.first(self.n_good)


#: A file whose pass is watched (`probe_file`'s `refuse`) shows its maps first on every GLANCE-th gate image
GLANCE = 4

#: Looks at the anomaly maps of the gate images picked for a first glance (their indices, the maps): a refusal record
#: where those already condemn the file, else None
Refuse = Callable[[np.ndarray, np.ndarray], "dict | None"]


def probe_file(model: onnx.ModelProto, head: HeadTensors, describe: Describer, images: np.ndarray,
               n_good: int | None, label: str, refuse: Refuse | None = None) -> Probe | dict:
    """`describe`'s pass over `images` (the first `n_good` good; None: all of them), the maps kept.

    With `refuse`, every `GLANCE`-th image (goods and anomalies alike) goes first, and a file `refuse` condemns on
    their maps costs no more of the pass: its refusal record is returned instead of a probe."""
    n_good = len(images) if n_good is None else n_good
    what = f"{label}: {describe.library} pass over the gate's images"
    if refuse is None:
        return Probe(model, head, describe, descriptors(describe, images, head, what, maps=True), n_good)
    first = np.arange(0, len(images), GLANCE)
    rest = np.setdiff1d(np.arange(len(images)), first)
    glance = descriptors(describe, images[first], head, f"{what} (a first {len(first)})", maps=True)
    refused = refuse(first, glance.maps)
    if refused is not None:
        return refused
    seen = Seen.join([glance, descriptors(describe, images[rest], head, f"{what} (the other {len(rest)})",
                                          maps=True)])
    return Probe(model, head, describe, seen.take(np.argsort(np.concatenate([first, rest]))), n_good)


def fit_head(probe: Probe, train: np.ndarray, estimator: str = "ledoit_wolf", seed: int = CROSS_FIT_SEED,
             label: str = "model", local: LocalHeadConfig | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(initializer name → new value, the record for the manifest): the head's Gaussian and its normalisation in
    the fused score, fitted on the descriptors the probe's library computes. With too few images to cross-fit, the
    normalisation keeps the model's values.

    With `local` (the RUN's local-head configuration) the local head's memory is chosen again from this file's own
    patches of the same training images, and normalised on its own validation scores: quantised features are far
    from FP32's memory, and not the same distance for every image (juice_bottle 512×256: the u8 file's local scores
    doubled and did not follow FP32's image by image, r −0.35; its fused AUROC fell to 0.80 with a global head fitted
    to it). SLSG's place in the fused score is set again from this file's own scores of the validation images, as
    the RUN set FP32's: quantisation shifts SLSG's scores too, and the max rule lets a shifted head win."""
    t0 = time.perf_counter()
    model, head, describe = probe.model, probe.head, probe.describe
    val_seen = probe.validation if head.location is not None and probe.n_good else None
    training = describe.for_training(train)
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


def refitted_outputs(probe: Probe, tensors: dict[str, np.ndarray]) -> Outputs | None:
    """The refitted file's outputs on the probe's images, from the probe's pass: SLSG's map and score as the probe's
    graph computed them (no head changes them; the file's own where the probe runs as the line does), the global and
    local scores from the new statistics by their numpy twins (`mahalanobis`, `image_scores`), the fused score by
    the graph's rule over the new normalisation (`fuse_numpy`). None where the graph fuses heads these twins do not
    know."""
    model, head, seen = probe.model, probe.head, probe.seen
    if head.rule is None or seen.maps is None or head.slsg_index is None or "slsg" not in seen.heads:
        return None
    stats = {key: np.asarray(tensors[name], np.float64) for key, name in HEAD_TENSORS.items()}
    scores = {"slsg": seen.heads["slsg"], "global": mahalanobis(stats, seen.descriptors)}
    places = {"slsg": head.slsg_index, "global": head.index}
    if head.local_index is not None:
        if seen.rows is None:
            return None
        columns = tensors[LOCAL_MEMORY] if LOCAL_MEMORY in tensors else initializer(model, LOCAL_MEMORY)
        scores["local"] = image_scores(memory_rows(columns), seen.rows, seen.per_image)
        places["local"] = head.local_index
    location = np.asarray(tensors.get(head.location, initializer(model, head.location)), np.float64)
    inv_scale = np.asarray(tensors.get(head.inv_scale, initializer(model, head.inv_scale)), np.float64)
    if sorted(places.values()) != list(range(location.size)):
        return None
    # the graph's vectors as the RUN's normalisation (no good scores counted here), fused by the one numpy rule
    norms = {name: HeadNorm(float(location[i]), 1.0 / float(inv_scale[i]), 0) for name, i in places.items()}
    fused = fuse_numpy(FusionConfig(tuple(sorted(places, key=places.get)), head.rule, norms), scores)
    return Outputs(seen.maps, fused, {k: v.astype(np.float32) for k, v in scores.items()})


def checked(outputs: Outputs | None, images: np.ndarray, run: Callable[[np.ndarray], Outputs]) -> tuple[
        Outputs | None, dict]:
    """`outputs` (the refitted file's, from its probe) where the file itself, run on `CHECKED_IMAGES` of `images`
    spread over goods and anomalies, gives the same maps and scores; else None (the gate then runs the file). The
    record says which."""
    if outputs is None:
        return None, {"gate_outputs": "the file's own pass (the refit's pass cannot give its fused score)"}
    picks = np.unique(np.linspace(0, len(images) - 1, min(CHECKED_IMAGES, len(images))).round().astype(int))
    got = run(images[picks])
    if set(outputs.heads) != set(got.heads):
        return None, {"gate_outputs": f"the file's own pass (it scores heads {sorted(got.heads)}, the refit's pass "
                                      f"{sorted(outputs.heads)})"}
    pairs = [(outputs.maps[picks], got.maps), (outputs.score[picks], got.score)]
    pairs += [(outputs.heads[k][picks], got.heads[k]) for k in outputs.heads]
    # NaN or inf from the file (or the twin) makes `worst` NaN, which no tolerance accepts
    worst = float(np.max([np.max(np.abs(a - b) / (CHECK_TOLERANCE * (1.0 + np.abs(b)))) for a, b in pairs]))
    if not worst <= 1.0:
        return None, {"gate_outputs": f"the file's own pass (on {len(picks)} images the refit's outputs stood "
                                      f"{worst:.2g}× the tolerance from the file's)"}
    return outputs, {"gate_outputs": f"the refit's pass, checked on {len(picks)} images through the file"}


def _head_of(model: onnx.ModelProto) -> tuple[HeadTensors | None, dict | None]:
    try:
        return find_head(model), None
    except ValueError as err:
        return None, {"refitted": False, "reason": str(err)}


def refit_head(path: Path, train: np.ndarray, images: np.ndarray, n_good: int | None = None,
               estimator: str = "ledoit_wolf", seed: int = CROSS_FIT_SEED, local: LocalHeadConfig | None = None,
               as_written: bool = False) -> Adjusted:
    """Refit the head of the model file at `path` in place on ONNX Runtime's descriptors (`as_written`: of the file
    as written, `onnxruntime_backend.AS_WRITTEN`): the record for the manifest (None without a head) and the
    refitted file's outputs on `images`.

    `train` are the good images the RUN's head was fitted on; `images` the gate's, the first `n_good` (None: all)
    its held-out good images (uint8 BGR at the model's input size)."""
    model = onnx.load(str(path))
    head, refused = _head_of(model)
    if head is None:
        return Adjusted(refused)
    probe = probe_file(model, head, onnxruntime_describer(model, head, as_written), images, n_good, path.name)
    tensors, record = fit_head(probe, train, estimator, seed, path.name, local)
    put_initializers(model, tensors, path)
    onnx.save(model, str(path))
    outputs, how = checked(refitted_outputs(probe, tensors), images,
                           lambda part: run_model(path, part, as_written=as_written))
    return Adjusted({**record, **how}, outputs)


def openvino_probe(path: Path, images: np.ndarray, n_good: int | None = None,
                   precision: str = "int8", refuse: Refuse | None = None) -> Probe | dict | None:
    """OpenVINO's pass at `precision` over the gate's `images` through the file at `path`, as its refit starts from
    (a refusal record where the graph's head cannot be found or `refuse` condemns the file at a first glance
    (`probe_file`), None without a head)."""
    model = onnx.load(str(path))
    head, refused = _head_of(model)
    if head is None:
        return refused
    describe = openvino_describer(model, head, precision)
    return probe_file(model, head, describe, images, n_good, f"{path.name} ({describe.library})", refuse)


def refit_head_for_openvino(path: Path, out: Path, train: np.ndarray, images: np.ndarray,
                            n_good: int | None = None, estimator: str = "ledoit_wolf", seed: int = CROSS_FIT_SEED,
                            precision: str = "int8", local: LocalHeadConfig | None = None,
                            probe: Probe | None = None) -> Adjusted:
    """The head of the model file at `path` fitted on OpenVINO's descriptors at `precision` (an INT8 file, or
    model.onnx in bf16), written to `out` (`edge_runtime.backends.refitted_head`); the file itself is untouched.
    `probe`: OpenVINO's pass over the gate's `images` where the caller made it already (`openvino_probe`). The
    refitted head's outputs on `images` come with it only where the probe runs as the line does
    (`PROBE_RUNS_AS_THE_LINE`)."""
    if probe is None:
        made = openvino_probe(path, images, n_good, precision)
        if not isinstance(made, Probe):
            return Adjusted(made)
        probe = made
    tensors, record = fit_head(probe, train, estimator, seed, f"{path.name} ({probe.describe.library})", local)
    save_head(out, tensors)
    if precision not in PROBE_RUNS_AS_THE_LINE:
        return Adjusted({**record, "gate_outputs": f"the file's own pass (OpenVINO {precision} rounds otherwise "
                                                   "with the refit's outputs)"})

    def run(part: np.ndarray) -> Outputs:
        backend = OpenVinoBackend(path, precision=precision, head=out)
        try:
            return run_backend(backend, part)
        finally:
            close_backend(backend)

    outputs, how = checked(refitted_outputs(probe, tensors), images, run)
    return Adjusted({**record, **how}, outputs)
