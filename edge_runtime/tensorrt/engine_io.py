"""Read an engine's I/O tensors through the name-based API (TensorRT ≥ 8.5)."""

from __future__ import annotations

from typing import Any

from .buffers import TensorSpec, numpy_dtype


def engine_tensors(trt: Any, engine: Any) -> list[TensorSpec]:
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        out.append(TensorSpec(name, is_input, shape, numpy_dtype(str(engine.get_tensor_dtype(name)))))
    return out


def max_batch(engine: Any, spec: TensorSpec) -> int:
    """The largest batch the engine's first optimisation profile allows (fixed batch engines: that batch)."""
    if spec.shape[0] != -1:
        return spec.shape[0]
    _, _, largest = engine.get_tensor_profile_shape(spec.name, 0)
    return int(largest[0])
