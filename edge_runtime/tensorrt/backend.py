"""TensorRT backend: the same interface as the ONNX Runtime backend.

`run(batch_bgr uint8 N×H×W×3) -> (maps float32 N×H×W, scores float32 N)`, `name`, and `infer_only()` for
engine-only timing. Pinned host buffers (mapped zero-copy on Jetson), one async stream, execute_async_v3
(≥ 10) or v2 (8.x), optional CUDA-graph capture per batch size. TensorRT is imported when the backend is
built, never when this module is imported.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_runtime.backends.base import HEAD_PREFIX, Outputs, check_batch

from .availability import load_tensorrt
from .buffers import (
    INPUT_NAME,
    MAP_NAME,
    SCORE_NAME,
    BufferPlan,
    batch_chunks,
    check_io_contract,
    maps_and_scores,
    plan_buffers,
)
from .cache import read_sidecar
from .cuda_memory import Allocation, CudaMemory, open_cuda
from .device import query_device
from .engine_io import engine_tensors, max_batch
from .errors import CudaUnavailable, EngineMismatch
from .plugins import register_plugins
from .versions import api_plan


def _engine_name(engine_path: Path) -> tuple[str, list[str]]:
    """Backend name from the sidecar's precision, and the plugins the engine was built with."""
    try:
        data = read_sidecar(engine_path)
    except ValueError:
        return "tensorrt", []
    prec = data.get("key", {}).get("precision")
    return (f"tensorrt-{prec}" if prec else "tensorrt"), list(data.get("build", {}).get("plugins", []))


def _engine_model(engine_path: Path) -> str:
    """The bundle model whose threshold applies: the INT8 engine is built from model.int8.onnx; FP16 engines
    score like the fp16 model."""
    try:
        prec = read_sidecar(engine_path).get("key", {}).get("precision")
    except ValueError:
        prec = None
    return {"int8": "int8", "fp16": "fp16"}.get(prec or "", "fp32")


class TensorRTBackend:
    def __init__(self, engine_path: Path | str, use_cuda_graph: bool = False, device_index: int = 0):
        trt = load_tensorrt()
        self._api = api_plan(trt.__version__)
        self.engine_path = Path(engine_path)
        self.name, plugins = _engine_name(self.engine_path)
        self.model = _engine_model(self.engine_path)
        register_plugins(plugins, self._api)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise EngineMismatch(
                f"TensorRT {self._api.version} could not load {self.engine_path.name} (built by another "
                "TensorRT or for another GPU?); rebuild it: slsg-edge build BUNDLE --force")
        self._context = self._engine.create_execution_context()
        tensors = engine_tensors(trt, self._engine)
        self.input_size = check_io_contract(tensors)
        image = next(t for t in tensors if t.name == INPUT_NAME)
        self._dynamic = image.shape[0] == -1
        self.max_batch = max_batch(self._engine, image)
        self.zero_copy = query_device(device_index).integrated
        self._cuda: CudaMemory = open_cuda(device_index)
        self.providers = [f"TensorRT {self._api.version}", self._cuda.name]
        if use_cuda_graph and not self._cuda.supports_graphs:
            raise CudaUnavailable(f"use_cuda_graph needs cuda-python; this backend runs on {self._cuda.name}")
        self.use_cuda_graph = bool(use_cuda_graph)
        self.plan: BufferPlan = plan_buffers(tensors, self.max_batch, self.zero_copy)
        self._alloc: dict[str, Allocation] = {
            b.name: self._cuda.allocate(b.shape, b.dtype, b.mapped) for b in self.plan.buffers}
        self._bind_addresses()
        self._graphs: dict[int, object] = {}
        self._current = 0       # batch size the context's input shape is set to (0: none yet)

    def _bind_addresses(self) -> None:
        if self._api.execute == "v3":
            for name, a in self._alloc.items():
                self._context.set_tensor_address(name, a.device_ptr)
        else:
            self._bindings = [0] * self._engine.num_bindings
            for name, a in self._alloc.items():
                self._bindings[self._engine.get_binding_index(name)] = a.device_ptr

    def _set_batch(self, b: int) -> None:
        if b != self._current:
            if self._dynamic:
                h, w = self.input_size
                self._context.set_input_shape(INPUT_NAME, (b, h, w, 3))
            self._current = b

    def _execute(self) -> None:
        handle = self._cuda.stream_handle
        ok = (self._context.execute_async_v3(handle) if self._api.execute == "v3"
              else self._context.execute_async_v2(self._bindings, handle))
        if not ok:
            raise RuntimeError(f"TensorRT failed to enqueue {self.engine_path.name} (see its log above)")

    def _enqueue_with_copies(self) -> None:
        self._cuda.to_device(self._alloc[INPUT_NAME])
        self._execute()
        for b in self.plan.outputs:
            self._cuda.to_host(self._alloc[b.name])

    def _run_chunk(self, frames: np.ndarray) -> Outputs:
        b = frames.shape[0]
        self._set_batch(b)
        self._alloc[INPUT_NAME].host[:b] = frames
        if self.use_cuda_graph and self._dynamic and b != self.max_batch:
            self._enqueue_with_copies()      # graphs are captured at one shape: the full batch
        elif self.use_cuda_graph:
            if b not in self._graphs:
                self._enqueue_with_copies()  # TensorRT allocates on the first enqueue: not inside capture
                self._cuda.synchronize()
                self._cuda.begin_capture()
                self._enqueue_with_copies()
                self._graphs[b] = self._cuda.end_capture()
            self._cuda.launch(self._graphs[b])
        else:
            self._enqueue_with_copies()
        self._cuda.synchronize()
        amap = self._alloc[MAP_NAME].host[:b]
        score = self._alloc[SCORE_NAME].host[:b] if SCORE_NAME in self._alloc else None
        maps, scores = maps_and_scores(amap, score)
        heads = {n[len(HEAD_PREFIX):]: np.array(a.host[:b], dtype=np.float32).reshape(b)
                 for n, a in self._alloc.items() if n.startswith(HEAD_PREFIX)}
        return Outputs(maps, scores, heads)

    def run(self, batch_bgr: np.ndarray) -> Outputs:
        batch = check_batch(batch_bgr, self.input_size)
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
        self._cuda.synchronize()
        t0 = time.perf_counter()
        self._execute()
        self._cuda.synchronize()
        return time.perf_counter() - t0

    def close(self) -> None:
        if getattr(self, "_cuda", None) is not None:
            self._cuda.synchronize()
            self._cuda.close()
            self._cuda = None

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
