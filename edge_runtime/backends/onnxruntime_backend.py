"""ONNX Runtime backend: the portable path (x86 CPU, Jetson with onnxruntime-gpu, any dGPU)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_runtime.backends.base import (
    MAP_OUTPUT,
    SCORE_OUTPUT,
    BackendError,
    Outputs,
    check_batch,
    fetched_outputs,
    outputs_from_named,
)

#: Best first. The TensorRT EP builds its own engine at start-up; CUDA next; the CPU always works.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


#: Bundle models ONNX Runtime's CPU provider runs with its Q/DQ fusion off, exactly as the file is written: the
#: symmetric INT8 file (signed activations, made for TensorRT). Fused, its s8 activations go through x86 u8×s8
#: kernels that saturate without VNNI (as OpenVINO's do, `seven_bit`): on juice_bottle 512×256 (AVX2) the global
#: head's score moved by up to 38 (of about 55) from the file's own arithmetic, 0.5 as written; the fused score by
#: 1.2 against 0.07. The heads refitted on it, its gate and its threshold would then describe arithmetic TensorRT
#: never does. As written it also runs faster there (about 0.15 s against 0.22 s an image).
AS_WRITTEN = ("int8-s8",)


def session_options(threads: int = 0, as_written: bool = False) -> ort.SessionOptions:
    """Quiet CPU session options; `as_written` turns ONNX Runtime's Q/DQ fusion off (`AS_WRITTEN`)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if as_written:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    return so


def cpu_session(model: Path | bytes, threads: int = 0, as_written: bool = False):
    """A plain CPU session (`onnxruntime.InferenceSession`) on a model file or a serialised model (a probe graph
    with extra outputs), quiet; `as_written` for the bundle models of `AS_WRITTEN`."""
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                session_options(threads, as_written), providers=["CPUExecutionProvider"])


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def best_providers(available: list[str] | None = None) -> list[str]:
    """The preferred providers this onnxruntime build has, best first, always ending with the CPU."""
    have = available_providers() if available is None else available
    chosen = [p for p in PREFERRED_PROVIDERS if p in have]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


def _provider_options(providers: list[str], trt_cache_dir: Path | None) -> list:
    out: list = []
    for p in providers:
        if p == "TensorrtExecutionProvider" and trt_cache_dir is not None:
            out.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt_cache_dir)}))
        else:
            out.append(p)
    return out


class OnnxRuntimeBackend:
    """One ONNX Runtime session over a bundle model (input `image` uint8 NHWC BGR; outputs map and score)."""

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        providers: list[str] | str = "auto",
        name: str = "onnx",
        trt_cache_dir: Path | None = None,
        model: str = "fp32",
    ) -> None:

        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX model {self.path} does not exist: check the bundle")
        chosen = best_providers() if providers == "auto" else list(providers)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        if model in AS_WRITTEN and chosen == ["CPUExecutionProvider"]:
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        if os.environ.get("SLSG_ORT_SPIN", "1") == "0":
            # Idle ORT workers spin for a while after each run; with several sessions taking turns (a benchmark),
            # one session's spinning threads would steal the cores of the next. A line runs one session: keep it.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=_provider_options(chosen, trt_cache_dir)
            )
        except Exception as e:  # onnxruntime raises its own exception types for bad files and providers
            raise BackendError(f"ONNX Runtime cannot open {self.path}: {e}") from None
        self.name = name
        self.model = model
        self.providers = list(self.session.get_providers())
        self.input_size, self._fixed_batch = self._read_input()

    def _read_input(self) -> tuple[tuple[int, int], int | None]:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        self._outputs = fetched_outputs(outputs)
        if "image" not in inputs or not {MAP_OUTPUT, SCORE_OUTPUT} <= outputs:
            raise BackendError(
                f"{self.path} is not an slsg model: it needs input 'image' and outputs "
                f"'anomaly_map', 'score' (has {sorted(inputs)} → {sorted(outputs)})"
            )
        shape = inputs["image"].shape
        if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[2], int):
            raise BackendError(
                f"{self.path}: input 'image' must be [N,H,W,3] with a fixed H and W, got {shape}"
            )
        fixed = shape[0] if isinstance(shape[0], int) else None
        return (shape[1], shape[2]), fixed

    def run(self, batch_bgr: np.ndarray) -> Outputs:
        batch = check_batch(batch_bgr, self.input_size)
        if self._fixed_batch is not None and batch.shape[0] != self._fixed_batch:
            if self._fixed_batch != 1:
                raise BackendError(
                    f"{self.path} takes batches of exactly {self._fixed_batch}, got {batch.shape[0]}"
                )
            return Outputs.concat([self._run(batch[i : i + 1]) for i in range(batch.shape[0])])
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> Outputs:
        values = self.session.run(self._outputs, {"image": batch})
        return outputs_from_named(dict(zip(self._outputs, values)), batch.shape[0], self.input_size)

    def __call__(self, batch_bgr: np.ndarray) -> Outputs:
        """The `Predictor` form used by evaluation and parity checks."""
        return self.run(batch_bgr)
