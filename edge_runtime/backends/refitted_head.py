"""A global head fitted for one backend: the statistics an INT8 file's head needs when *that* backend computes the
pooled descriptors it reads.

OpenVINO lowers Q/DQ its own way and runs the symmetric file's weights in 7 bits (`seven_bit`), so its descriptors
of an image sit a little apart from ONNX Runtime's, and the Mahalanobis distance multiplies the difference: with
the head fitted on ONNX Runtime's descriptors, the fused score's AUROC under OpenVINO fell from 0.99 to 0.68
(juice_bottle) while the maps still agreed 0.87. Export fits the head once more on OpenVINO's own descriptors and
stores only the head's initializers, beside the model (`heads/openvino.int8-s8.npz`, hashed by the manifest like
every file). The backend puts them into the graph in memory, so the model file that TensorRT and ONNX Runtime
read stays byte for byte what was gated for them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edge_runtime.backends.base import BackendError
from edge_runtime.optional import onnx

HEADS_DIR = "heads"


def head_file(model: str) -> str:
    """Bundle-relative file of the head fitted for `model` (a threshold key such as "openvino:int8-s8")."""
    return f"{HEADS_DIR}/{model.replace(':', '.')}.npz"


def save_head(path: Path, tensors: dict) -> None:
    """Initializer name → array, as a plain .npz (numeric arrays only: it is read without unpickling)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **{name: np.asarray(v) for name, v in tensors.items()})


def read_head(path: Path) -> dict:
    """Initializer name → array; a damaged or foreign file is refused with what to do."""
    again = "copy the bundle again or re-export it"
    try:
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not the .npz archive `slsg export` writes")
        with stored:
            tensors = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BackendError(f"refitted head {path} cannot be read ({e}): {again}") from None
    if not tensors or any(t.dtype.kind != "f" for t in tensors.values()):
        raise BackendError(f"refitted head {path} holds no float tensors, so `slsg export` did not write it: {again}")
    return tensors


def put_initializers(model, tensors: dict, source: Path) -> None:
    """Replace `model`'s initializers by name, in place; each must exist with the same shape."""
    numpy_helper = onnx.numpy_helper
    index = {t.name: i for i, t in enumerate(model.graph.initializer)}
    for name, value in tensors.items():
        if name not in index:
            raise BackendError(f"{source} sets {name}, which the model has not: the head belongs to another model; "
                               "re-export the bundle")
        old = model.graph.initializer[index[name]]
        dtype = numpy_helper.to_array(old).dtype
        if tuple(old.dims) != value.shape:
            raise BackendError(f"{source}: {name} has shape {value.shape}, the model's is {tuple(old.dims)}: "
                               "the head belongs to another model; re-export the bundle")
        old.CopyFrom(numpy_helper.from_array(value.astype(dtype), name))
