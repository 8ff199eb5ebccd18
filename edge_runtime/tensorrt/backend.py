"""TensorRT backend: the same contract as every backend (uint8 BGR in, `Outputs` out), plus the engine
I/O contract and buffer plans it rests on (pure numpy, tested without TensorRT).

Pinned host buffers (mapped zero-copy on Jetson), one async stream, execute_async_v3 (≥ 10) or v2 (8.x),
optional CUDA-graph capture per batch size. TensorRT is imported when the backend is built, never when this
module is imported; an engine with the ahead-of-time fused plugin loads without Triton or the plugin module
(the kernel is inside the engine). Resources are released in reverse order of creation by `close()`, or at
interpreter exit when nobody called it.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from edge_runtime.backends.base import HEAD_PREFIX, MAP_OUTPUT, MAP_PREFIX, SCORE_OUTPUT, Outputs, check_batch
from edge_runtime.scoring import image_score

from .cache import read_sidecar
from .cuda import Allocation, open_cuda, query_device
from .errors import CudaUnavailable, DeviceMemoryError, EngineMismatch, TensorRTError
from .recipe import MODEL_OF, NO_DLA, check_plugins
from .versions import ApiPlan, api_plan, load_tensorrt

INPUT_NAME = "image"

#: tensorrt.DataType member name → numpy dtype (types numpy cannot hold are refused at planning time).
_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
           "BOOL": np.bool_, "UINT8": np.uint8}


# ---------------------------------------------------------------- the engine's I/O contract

@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor as the engine declares it (-1 marks a dynamic dimension)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


def numpy_dtype(trt_dtype_name: str) -> np.dtype:
    """`str(trt.DataType.HALF)` → float16; accepts "DataType.HALF" or "HALF"."""
    key = str(trt_dtype_name).rsplit(".", 1)[-1].upper()
    if key not in _DTYPES:
        raise EngineMismatch(f"engine tensor type {key} has no numpy equivalent "
                             f"(supported: {', '.join(_DTYPES)})")
    return np.dtype(_DTYPES[key])


def engine_tensors(trt: Any, engine: Any) -> list[TensorSpec]:
    """The engine's I/O through the name-based API (bound from TensorRT 8.5)."""
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        out.append(TensorSpec(name, is_input, shape, numpy_dtype(str(engine.get_tensor_dtype(name)))))
    return out


def check_io_contract(tensors: Sequence[TensorSpec]) -> tuple[int, int]:
    """`image` uint8 [N,H,W,3] in; `anomaly_map` [N,1,H,W], optional `score` [N] and any number of
    `score_<head>` [N] out, nothing else. Returns (H, W)."""
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
    amap = by_name.get(MAP_OUTPUT)
    h, w = image.shape[1], image.shape[2]
    if amap is None or amap.is_input or len(amap.shape) != 4 or tuple(amap.shape[1:]) != (1, h, w):
        raise EngineMismatch(f"engine output {MAP_OUTPUT!r} must be float [N,1,{h},{w}] (engine has {names})")
    for t in tensors:
        if t.is_input or t.name == MAP_OUTPUT:
            continue
        if t.name.startswith(MAP_PREFIX):
            if len(t.shape) != 4 or tuple(t.shape[1:]) != (1, h, w):
                raise EngineMismatch(f"engine output {t.name!r} must be float [N,1,{h},{w}] like {MAP_OUTPUT}, "
                                     f"got {list(t.shape)}")
            continue
        if t.name != SCORE_OUTPUT and not t.name.startswith(HEAD_PREFIX):
            raise EngineMismatch(f"engine output {t.name!r} is not part of the SLSG contract "
                                 f"({MAP_OUTPUT}, {SCORE_OUTPUT}, {HEAD_PREFIX}<head>, {MAP_PREFIX}<head>); "
                                 f"engine has {names}")
        if len(t.shape) != 1:
            raise EngineMismatch(f"engine output {t.name!r} must be [N], got {list(t.shape)}")
    return h, w


# ---------------------------------------------------------------- buffer plans

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


def outputs_from_buffers(named: dict[str, np.ndarray], b: int) -> Outputs:
    """The first `b` rows of every output buffer → Outputs (copies: the buffers are reused). Every
    `score_<head>` output becomes a head; without a `score` output the shared score rule applies."""
    amap = named[MAP_OUTPUT][:b]
    maps = np.array(amap.reshape(b, *amap.shape[2:]), dtype=np.float32)
    if SCORE_OUTPUT in named:
        score = np.array(named[SCORE_OUTPUT][:b], dtype=np.float32).reshape(b)
    else:
        score = image_score(maps)
    heads = {n[len(HEAD_PREFIX):]: np.array(a[:b], dtype=np.float32).reshape(b)
             for n, a in named.items() if n.startswith(HEAD_PREFIX)}
    head_maps = {n[len(MAP_PREFIX):]: np.array(a[:b].reshape(b, *maps.shape[1:]), dtype=np.float32)
                 for n, a in named.items() if n.startswith(MAP_PREFIX)}
    return Outputs(maps, score, heads, head_maps)


def engine_batches(engine: Any, spec: TensorSpec) -> tuple[int, int]:
    """(smallest, largest) batch of the engine's first optimisation profile (fixed batch: that batch twice)."""
    if spec.shape[0] != -1:
        return spec.shape[0], spec.shape[0]
    smallest, _, largest = engine.get_tensor_profile_shape(spec.name, 0)
    return int(smallest[0]), int(largest[0])


def check_whole_batches(n: int, batches: tuple[int, int], dynamic: bool, engine_name: str, dla_core: int) -> None:
    """A dynamic engine whose profile holds one batch (min = opt = max, as every DLA engine) runs only that
    batch: refuse any other frame count up front, instead of TensorRT refusing a smaller last chunk midway."""
    smallest, largest = batches
    if not dynamic or smallest != largest or n % largest == 0:
        return
    why = f"DLA core {dla_core} runs only the batch it was built for" if dla_core != NO_DLA else \
        "its optimisation profile holds that one batch"
    raise EngineMismatch(f"{engine_name} runs batches of exactly {largest} frames ({why}); got {n}: send a "
                         f"multiple of {largest} frames, or rebuild with --max-batch {n}")


# ---------------------------------------------------------------- the backend

@dataclass(frozen=True)
class EngineInfo:
    """What the sidecar says about an engine file (defaults when it has none)."""

    name: str            # "tensorrt-fp16"
    model: str           # the bundle model whose threshold applies
    dla_core: int
    plugins: tuple[str, ...]


def engine_info(engine_path: Path) -> EngineInfo:
    """The INT8 engine is built from model.int8-s8.onnx and FP16 engines score like the fp16 model, so
    their thresholds are those models'."""
    try:
        data = read_sidecar(engine_path)
    except ValueError:
        return EngineInfo("tensorrt", "fp32", NO_DLA, ())
    key = data.get("key", {})
    prec = key.get("precision")
    return EngineInfo(f"tensorrt-{prec}" if prec else "tensorrt",
                      MODEL_OF.get(prec or "", "fp32"),
                      int(key.get("dla_core", NO_DLA)), tuple(key.get("plugins", [])))


def _amount(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def no_context_message(engine_name: str, engine: Any) -> str:
    """Why `create_execution_context()` gave None: it allocates the engine's activation memory (NvInferRuntime.h,
    ExecutionContextAllocationStrategy kSTATIC) and returns nullptr — None here — when it cannot."""
    size = getattr(engine, "device_memory_size_v2", None)      # 10.1+; device_memory_size before (gone in 11)
    size = size if size is not None else getattr(engine, "device_memory_size", None)
    need = f"{_amount(int(size))} of activation memory" if size is not None else "its activation memory"
    return (f"TensorRT could not create an execution context for {engine_name}: the device is out of memory "
            f"(the context needs {need}). Free device memory — stop other GPU processes or engines — or rebuild "
            "with a smaller --max-batch")


class _Resources:
    """Everything the backend opened, released in reverse order (context, engine, runtime, then CUDA
    memory and stream). Held apart from the backend so a finalizer can release it at exit."""

    def __init__(self) -> None:
        self.cuda: Any = None
        self.runtime: Any = None
        self.engine: Any = None
        self.context: Any = None
        self.graphs: dict[int, Any] = {}

    def release(self) -> None:
        cuda, self.cuda = self.cuda, None
        try:
            if cuda is not None:
                with contextlib.suppress(TensorRTError):   # a failed stream must not keep the rest alive
                    cuda.synchronize()
            self.graphs = {}
            self.context = None
            self.engine = None
            self.runtime = None
        finally:
            if cuda is not None:
                cuda.close()


class TensorRTBackend:
    def __init__(self, engine_path: Union[Path, str], use_cuda_graph: bool = False, device_index: int = 0):
        trt = load_tensorrt()
        self._api: ApiPlan = api_plan(trt.__version__)
        self.engine_path = Path(engine_path)
        info = engine_info(self.engine_path)
        self.name, self.model = info.name, info.model
        check_plugins(list(info.plugins), self._api)   # refuse early; nothing to register: AOT kernels
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)
        try:
            self._open(trt, info, use_cuda_graph, device_index)
        except BaseException:
            self.close()
            raise

    def _open(self, trt: Any, info: EngineInfo, use_cuda_graph: bool, device_index: int) -> None:
        res = self._res
        self.zero_copy = query_device(device_index).integrated
        res.cuda = open_cuda(device_index)      # first: the engine is deserialised on this device
        if use_cuda_graph and not res.cuda.supports_graphs:
            raise CudaUnavailable(f"use_cuda_graph needs cuda-python; this backend runs on {res.cuda.name}")
        self.use_cuda_graph = bool(use_cuda_graph)
        with res.cuda.activate():
            self._logger = trt.Logger(trt.Logger.WARNING)
            res.runtime = trt.Runtime(self._logger)
            if info.dla_core != NO_DLA:
                res.runtime.DLA_core = info.dla_core   # must be set before deserialising a DLA engine
            res.engine = res.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if res.engine is None:
                raise EngineMismatch(
                    f"TensorRT {self._api.version} could not load {self.engine_path.name} (built by another "
                    "TensorRT or for another GPU?); rebuild it: slsg-edge build BUNDLE --force")
            res.context = res.engine.create_execution_context()
            if res.context is None:
                raise DeviceMemoryError(no_context_message(self.engine_path.name, res.engine))
            tensors = engine_tensors(trt, res.engine)
            self.input_size = check_io_contract(tensors)
            image = next(t for t in tensors if t.name == INPUT_NAME)
            self._dynamic = image.shape[0] == -1
            self._batches = engine_batches(res.engine, image)
            self.max_batch = self._batches[1]
            self.plan: BufferPlan = plan_buffers(tensors, self.max_batch, self.zero_copy)
            self._alloc: dict[str, Allocation] = {
                b.name: res.cuda.allocate(b.shape, b.dtype, b.mapped) for b in self.plan.buffers}
            self._bind_addresses()
        self.providers = [f"TensorRT {self._api.version}", res.cuda.name]
        self.dla_core = info.dla_core
        self._current = 0       # batch size the context's input shape is set to (0: none yet)

    def _bind_addresses(self) -> None:
        res = self._res
        if self._api.execute == "v3":
            for name, a in self._alloc.items():
                if res.context.set_tensor_address(name, a.device_ptr) is False:
                    raise EngineMismatch(f"TensorRT refused the address of tensor {name!r}")
        else:
            self._bindings = [0] * res.engine.num_bindings
            for name, a in self._alloc.items():
                self._bindings[res.engine.get_binding_index(name)] = a.device_ptr

    def _set_batch(self, b: int) -> None:
        if b == self._current:
            return
        if self._dynamic:
            h, w = self.input_size
            if not self._res.context.set_input_shape(INPUT_NAME, (b, h, w, 3)):
                raise EngineMismatch(f"{self.engine_path.name} refused input shape {(b, h, w, 3)}: outside "
                                     f"its optimisation profile (max batch {self.max_batch})")
        self._current = b

    def _execute(self) -> None:
        handle = self._res.cuda.stream_handle
        ctx = self._res.context
        ok = (ctx.execute_async_v3(handle) if self._api.execute == "v3"
              else ctx.execute_async_v2(self._bindings, handle))
        if not ok:
            raise RuntimeError(f"TensorRT failed to enqueue {self.engine_path.name} (see its log above)")

    def _enqueue_with_copies(self) -> None:
        cuda = self._res.cuda
        cuda.to_device(self._alloc[INPUT_NAME])
        self._execute()
        for b in self.plan.outputs:
            cuda.to_host(self._alloc[b.name])

    def _run_chunk(self, frames: np.ndarray) -> Outputs:
        res, b = self._res, frames.shape[0]
        with res.cuda.activate():
            self._set_batch(b)
            self._alloc[INPUT_NAME].host[:b] = frames
            if self.use_cuda_graph and self._dynamic and b != self.max_batch:
                self._enqueue_with_copies()      # graphs are captured at one shape: the full batch
            elif self.use_cuda_graph:
                if b not in res.graphs:
                    self._enqueue_with_copies()  # TensorRT allocates on the first enqueue: not inside capture
                    res.cuda.synchronize()
                    res.graphs[b] = res.cuda.capture(self._enqueue_with_copies)
                res.cuda.launch(res.graphs[b])
            else:
                self._enqueue_with_copies()
            res.cuda.synchronize()
        return outputs_from_buffers({n: a.host for n, a in self._alloc.items() if n != INPUT_NAME}, b)

    def run(self, batch_bgr: np.ndarray) -> Outputs:
        if self._res.cuda is None:
            raise RuntimeError(f"{self.name} backend for {self.engine_path.name} is closed")
        batch = check_batch(batch_bgr, self.input_size)
        check_whole_batches(batch.shape[0], self._batches, self._dynamic, self.engine_path.name, self.dla_core)
        return Outputs.concat([self._run_chunk(batch[start:stop])
                               for start, stop in batch_chunks(batch.shape[0], self.max_batch)])

    def __call__(self, batch_bgr: np.ndarray) -> Outputs:
        """The `Predictor` form."""
        return self.run(batch_bgr)

    def infer_only(self) -> float:
        """Seconds for one enqueue + stream sync on the inputs of the last `run` (no host copies, no
        pre-processing): engine-only latency on real frames, never on made-up tensors."""
        if self._current == 0:
            raise RuntimeError("call run() on real frames before infer_only(): it re-runs those inputs")
        cuda = self._res.cuda
        with cuda.activate():
            cuda.synchronize()
            t0 = time.perf_counter()
            self._execute()
            cuda.synchronize()
        return time.perf_counter() - t0

    def close(self) -> None:
        """Release context, engine, runtime, graphs, buffers and stream; safe to call more than once."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

