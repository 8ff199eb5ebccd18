"""Buffer plans: for an engine's I/O tensors and a batch size, what to allocate where. Pure numpy.

On an integrated GPU (Jetson) host and device share DRAM, so mapped pinned memory (zero-copy) removes the
two copies per frame; on a discrete GPU, pinned host buffers + device buffers + async copies on one stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import EngineMismatch

INPUT_NAME = "image"
MAP_NAME = "anomaly_map"
SCORE_NAME = "score"

#: tensorrt.DataType member name → numpy dtype (types numpy cannot hold are refused at planning time).
_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
           "BOOL": np.bool_, "UINT8": np.uint8}


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor as the engine declares it (-1 marks a dynamic dimension)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class BufferSpec:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    mapped: bool        # host memory mapped into the GPU's address space: no device buffer, no copy


@dataclass(frozen=True)
class BufferPlan:
    batch: int
    zero_copy: bool
    buffers: tuple[BufferSpec, ...]

    @property
    def inputs(self) -> tuple[BufferSpec, ...]:
        return tuple(b for b in self.buffers if b.is_input)

    @property
    def outputs(self) -> tuple[BufferSpec, ...]:
        return tuple(b for b in self.buffers if not b.is_input)

    @property
    def total_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers)

    def by_name(self, name: str) -> BufferSpec:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)


def numpy_dtype(trt_dtype_name: str) -> np.dtype:
    """`str(trt.DataType.HALF)` → float16; accepts "DataType.HALF" or "HALF"."""
    key = str(trt_dtype_name).rsplit(".", 1)[-1].upper()
    if key not in _DTYPES:
        raise EngineMismatch(f"engine tensor type {key} has no numpy equivalent "
                             f"(supported: {', '.join(_DTYPES)})")
    return np.dtype(_DTYPES[key])


def concrete_shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    """Fill the batch dimension; any other dynamic dimension is an engine this runtime cannot feed."""
    if not spec.shape:
        raise EngineMismatch(f"engine tensor {spec.name!r} is a scalar; SLSG tensors have a batch dimension")
    dims = list(spec.shape)
    if dims[0] == -1:
        dims[0] = batch
    elif dims[0] != batch:
        raise EngineMismatch(f"engine tensor {spec.name!r} has a fixed batch of {dims[0]}, asked for {batch}")
    if any(d < 0 for d in dims[1:]):
        raise EngineMismatch(f"engine tensor {spec.name!r} has dynamic non-batch dimensions {spec.shape}; "
                             "export the bundle with a fixed image size")
    return tuple(dims)


def check_io_contract(tensors: Sequence[TensorSpec]) -> tuple[int, int]:
    """The engine takes `image` uint8 [N,H,W,3] and gives `anomaly_map` [N,1,H,W] (+ optional `score` [N]).
    Returns (H, W)."""
    by_name = {t.name: t for t in tensors}
    names = ", ".join(f"{t.name}{list(t.shape)}" for t in tensors)
    image = by_name.get(INPUT_NAME)
    if image is None or not image.is_input:
        raise EngineMismatch(f"engine has no input {INPUT_NAME!r} (it has {names}); is it an SLSG engine?")
    if image.dtype != np.uint8 or len(image.shape) != 4 or image.shape[3] != 3:
        raise EngineMismatch(f"engine input {INPUT_NAME!r} is {image.dtype}{list(image.shape)}, "
                             "expected uint8 [N,H,W,3] BGR")
    extra_inputs = [t.name for t in tensors if t.is_input and t.name != INPUT_NAME]
    if extra_inputs:
        raise EngineMismatch(f"engine has extra inputs {extra_inputs}; SLSG engines have only {INPUT_NAME!r}")
    amap = by_name.get(MAP_NAME)
    h, w = image.shape[1], image.shape[2]
    if amap is None or amap.is_input or len(amap.shape) != 4 or tuple(amap.shape[1:]) != (1, h, w):
        raise EngineMismatch(f"engine output {MAP_NAME!r} must be float [N,1,{h},{w}] (engine has {names})")
    score = by_name.get(SCORE_NAME)
    if score is not None and len(score.shape) != 1:
        raise EngineMismatch(f"engine output {SCORE_NAME!r} must be [N], got {list(score.shape)}")
    return h, w


def plan_buffers(tensors: Sequence[TensorSpec], batch: int, zero_copy: bool) -> BufferPlan:
    if batch < 1:
        raise ValueError(f"batch must be ≥ 1, got {batch}")
    specs = []
    for t in tensors:
        shape = concrete_shape(t, batch)
        nbytes = int(np.prod(shape, dtype=np.int64)) * t.dtype.itemsize
        specs.append(BufferSpec(t.name, t.is_input, shape, t.dtype, nbytes, zero_copy))
    return BufferPlan(batch, zero_copy, tuple(specs))


def batch_chunks(n: int, max_batch: int) -> list[tuple[int, int]]:
    """[start, stop) slices of at most max_batch frames covering n frames."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
    return [(i, min(i + max_batch, n)) for i in range(0, n, max_batch)]


def maps_and_scores(anomaly_map: np.ndarray, score: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Engine outputs → (float32 N×H×W maps, float32 N scores); the score rule is the shared one when the
    engine has no score output."""
    # Copies: the backend reuses its output buffers for the next batch.
    maps = np.array(anomaly_map.reshape(anomaly_map.shape[0], *anomaly_map.shape[2:]), dtype=np.float32)
    if score is None:
        from edge_runtime.scoring import image_score
        return maps, image_score(maps)
    return maps, np.array(score, dtype=np.float32).reshape(-1)
