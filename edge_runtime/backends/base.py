"""What every inference backend offers the pipeline: uint8 BGR frames in, maps and scores out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from edge_runtime.errors import SlsgError

#: Graph output names: the map, the score the threshold applies to, and one `score_<head>` per head.
MAP_OUTPUT = "anomaly_map"
SCORE_OUTPUT = "score"
HEAD_PREFIX = "score_"
#: A head with a map of its own beside SLSG's (`map_local`: the local head's patch distances at the input size).
MAP_PREFIX = "map_"


@dataclass(frozen=True)
class Outputs:
    """One batch's results. `score` is what the threshold applies to (the fused score when a model has several
    heads); `heads` holds each head's own score as the graph outputs it (`score_slsg` → "slsg"), so the line
    can see which head flagged a part. Every backend returns this, whatever the model's heads."""

    maps: np.ndarray  # float32 N×H×W anomaly probability at the model size
    score: np.ndarray  # float32 N
    heads: dict[str, np.ndarray] = field(default_factory=dict)  # head name → float32 N
    head_maps: dict[str, np.ndarray] = field(default_factory=dict)  # head name → float32 N×H×W (`map_<head>`)

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def head_scores(self, i: int) -> dict[str, float]:
        """Frame i's per-head scores as plain floats (for a log line)."""
        return {k: float(v[i]) for k, v in self.heads.items()}

    @staticmethod
    def concat(parts: list) -> Outputs:
        if len(parts) == 1:
            return parts[0]
        return Outputs(
            np.concatenate([p.maps for p in parts]),
            np.concatenate([p.score for p in parts]),
            {k: np.concatenate([p.heads[k] for p in parts]) for k in parts[0].heads},
            {k: np.concatenate([p.head_maps[k] for p in parts]) for k in parts[0].head_maps},
        )


def fetched_outputs(names) -> list[str]:
    """The graph outputs a backend fetches, in one order: the map, the score, every head's score and map."""
    names = set(names)
    return [MAP_OUTPUT, SCORE_OUTPUT, *sorted(o for o in names if o.startswith(HEAD_PREFIX)),
            *sorted(o for o in names if o.startswith(MAP_PREFIX))]


def outputs_from_named(named: dict[str, np.ndarray], n: int, size: tuple) -> Outputs:
    """Graph outputs by name → Outputs; every `score_<head>` output becomes a head (no code path per head)."""
    maps = np.asarray(named[MAP_OUTPUT], dtype=np.float32).reshape(n, *size)
    score = np.asarray(named[SCORE_OUTPUT], dtype=np.float32).reshape(n)
    heads = {
        k[len(HEAD_PREFIX):]: np.asarray(v, dtype=np.float32).reshape(n)
        for k, v in named.items()
        if k.startswith(HEAD_PREFIX)
    }
    head_maps = {
        k[len(MAP_PREFIX):]: np.asarray(v, dtype=np.float32).reshape(n, *size)
        for k, v in named.items()
        if k.startswith(MAP_PREFIX)
    }
    return Outputs(maps, score, heads, head_maps)


class BackendError(SlsgError, RuntimeError):
    """A backend that cannot be opened or run; the message says which file or library and what to do."""


@runtime_checkable
class Backend(Protocol):
    """`run(batch)`: uint8 BGR N×H×W×3 at `input_size` → `Outputs`.

    `model` names the bundle model file the backend runs ("fp32", "fp16", "int8-s8", "int8-u8", "bf16"): each has
    its own threshold in the bundle (`Bundle.threshold_for`)."""

    name: str
    model: str
    providers: list
    input_size: tuple

    def run(self, batch_bgr: np.ndarray) -> Outputs: ...


def model_of(backend) -> str:
    """The bundle model a backend runs, the key of its threshold ("fp32", "int8-s8", "openvino:int8-s8", …); "fp32"
    for a runner that does not say (a predictor, a test double)."""
    return getattr(backend, "model", "fp32")


def close_backend(backend) -> None:
    """Release what a backend holds, where it holds something (TensorRT: the engine, CUDA buffers)."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()


def check_batch(batch_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A wrong batch must fail with a message, not inside a C++ session with a cryptic one."""
    if not isinstance(batch_bgr, np.ndarray) or batch_bgr.dtype != np.uint8:
        raise BackendError(
            f"backend input must be a uint8 array, got "
            f"{getattr(batch_bgr, 'dtype', type(batch_bgr).__name__)}"
        )
    if batch_bgr.ndim == 3:
        batch_bgr = batch_bgr[None]
    if batch_bgr.ndim != 4 or batch_bgr.shape[1:] != (size[0], size[1], 3):
        raise BackendError(
            f"backend input must be N×{size[0]}×{size[1]}×3 BGR, got {batch_bgr.shape}: "
            "pass frames through edge_runtime.preprocess.prepare first"
        )
    return np.ascontiguousarray(batch_bgr)


def input_size_of(backend: Backend) -> tuple[int, int]:
    """`input_size`, or `size` for a backend that names it so (the TensorRT backend did at first)."""
    size = getattr(backend, "input_size", None) or getattr(backend, "size", None)
    if size is None:
        raise BackendError(f"backend {getattr(backend, 'name', backend)!r} does not say its input size")
    return int(size[0]), int(size[1])
