"""OpenVINO backend: the x86 line-PC path (optional extra `openvino`), same contract as ONNX Runtime.

It reads the bundle's ONNX files directly (FP32, INT8 Q/DQ); no IR conversion step, so a bundle stays one
set of files. Precision is asked for explicitly and checked after compiling, because OpenVINO's CPU plugin
silently picks its own: bf16 by default on CPUs that have it (maps then differ from FP32 by ~2e-3, an
ungated model), and f32 without a word where bf16 was asked on a CPU that lacks it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_runtime.backends.base import (
    MAP_OUTPUT,
    SCORE_OUTPUT,
    BackendError,
    Outputs,
    check_batch,
    fetched_outputs,
    outputs_from_named,
)
from edge_runtime.backends.refitted_head import put_initializers, read_head
from edge_runtime.backends.seven_bit import seven_bit_weights
from edge_runtime.backends.signal_stack import keep_signal_stack
from edge_runtime.optional import MissingDependency, available, onnx, openvino

#: Backend precision → OpenVINO `INFERENCE_PRECISION_HINT`. INT8 keeps the float parts (pre-processing,
#: graph attention, scoring) in f32, as ONNX Runtime ran them when the INT8 gate measured the model.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # our name → OpenVINO's hint
PRECISIONS = tuple(INFERENCE_PRECISION)
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
#: An INT8 file as OpenVINO runs it has its own gate and threshold: `openvino:int8-s8`, `openvino:int8-u8`.
#: OpenVINO lowers Q/DQ its own way and runs the weights re-stored in 7 bits (`seven_bit`: its pre-VNNI kernels
#: saturate on full-range ones), so ONNX Runtime's INT8 gate does not vouch for it.
OPENVINO_PREFIX = "openvino:"


def openvino_available() -> bool:
    return available("openvino")


def _core():
    try:
        return openvino.Core()
    except MissingDependency as e:
        raise BackendError(str(e)) from None


def compile_cpu(model: str | bytes, config: dict):
    """OpenVINO's CPU compile of an ONNX file path or serialised ONNX bytes, the thread's signal stack kept
    (see `signal_stack`: OpenVINO swaps it, and a stale one turns the next SIGTERM into a SIGSEGV)."""
    core = _core()
    read = core.read_model(model, b"") if isinstance(model, bytes) else core.read_model(model)
    with keep_signal_stack():
        return core.compile_model(read, "CPU", config)


class ImagePass:
    """A graph compiled for a pass over many images (export's head refits): each image is run alone, as the line
    runs it, but as many at once as OpenVINO has streams for the cores (`THROUGHPUT`). On 2 cores two one-thread
    streams gave the line's one two-thread stream's outputs to the bit and 11 % more images a second (juice_bottle
    512×256, the u8 file's probe graph: 32.7 ms an image against 36.7 ms)."""

    def __init__(self, model: str | bytes, precision: str, names: list[str], input_name: str = "image") -> None:
        compiled = compile_cpu(model, compile_config(precision, "THROUGHPUT"))
        self.names, self.input_name = list(names), input_name
        self.queue = openvino.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    @property
    def jobs(self) -> int:
        """Images in flight at once: a batch of this many (or a multiple) keeps every stream busy."""
        return len(self.queue)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Each tensor of `names` for `images` (N×H×W×3, run one by one), stacked over the images in order."""
        got: list[list[np.ndarray] | None] = [None] * len(images)

        def keep(request, i: int) -> None:
            got[i] = [np.array(request.get_tensor(name).data, copy=True) for name in self.names]

        self.queue.set_callback(keep)
        with keep_signal_stack():
            for i in range(len(images)):
                self.queue.start_async({self.input_name: images[i:i + 1]}, i)
            self.queue.wait_all()
        return {name: np.concatenate([g[k] for g in got]) for k, name in enumerate(self.names)}


def load_onnx(path: Path):
    """The ONNX graph of `path`, for the edits OpenVINO's INT8 path makes in memory."""
    try:
        return onnx.load(str(path))
    except MissingDependency as e:
        raise BackendError(str(e)) from None
    except Exception as e:  # protobuf's DecodeError and friends
        raise BackendError(f"{path} is not a readable ONNX model ({e}): copy the bundle again") from None


def as_openvino_runs_it(model, precision: str, head: Path | None = None) -> int:
    """Edit `model` in place into what OpenVINO runs: the head refitted for it, and for INT8 signed-activation
    weights in 7 bits (`seven_bit`); how many weights were re-stored."""
    if head is not None:
        put_initializers(model, read_head(head), head)
    if precision != "int8":
        return 0

    return seven_bit_weights(model)


def openvino_source(path: Path, precision: str, head: Path | None = None) -> tuple[str | bytes, int]:
    """(what `compile_cpu` compiles, how many weights were re-stored in 7 bits): the file itself, or its graph
    edited in memory (`as_openvino_runs_it`) for INT8 or a refitted head."""
    if precision != "int8" and head is None:
        return str(path), 0
    graph = load_onnx(path)
    rewritten = as_openvino_runs_it(graph, precision, head)
    return graph.SerializeToString(), rewritten


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin can run natively here ("FP32", "BF16", "INT8", ...)."""
    return [str(c) for c in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def cpu_has_bf16() -> bool:
    return "BF16" in cpu_capabilities()


def compile_config(precision: str, hint: str = "LATENCY") -> dict:
    """OpenVINO's CPU compile settings for `precision` as the line runs it: the hint, and the inference precision
    asked for explicitly (the CPU plugin otherwise picks bf16 by itself where it can)."""
    return {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision]}


def require_precision(precision: str) -> None:
    """Raise BackendError where OpenVINO cannot run `precision` here as asked: an unknown precision, or bf16 where
    OpenVINO is missing or the CPU has no bf16 (OpenVINO would silently run f32 under the name)."""
    if precision not in INFERENCE_PRECISION:
        raise BackendError(f"unknown OpenVINO precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        raise BackendError(
            f"this CPU has no bf16 arithmetic (OpenVINO capabilities: {', '.join(cpu_capabilities())}): "
            "bf16 would silently run as f32; use --backend openvino or openvino-int8"
        )


def _type_name(value: object) -> str:
    """OpenVINO returns element types (`<Type: 'float32'>`); compare them by their short name."""
    name = getattr(value, "get_type_name", None)
    text = str(name() if callable(name) else value).lower()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text, text)


class OpenVinoBackend:
    """One compiled OpenVINO model over a bundle model file (input `image` uint8 NHWC BGR; map and scores out).

    `precision`: fp32 | bf16 | int8 (int8: a Q/DQ file; the precision names the arithmetic OpenVINO uses, the
    `model` names the bundle file and so the threshold). `hint`: LATENCY (one frame at a time, a line) or
    THROUGHPUT. `threads`: OpenVINO's `INFERENCE_NUM_THREADS` (None: its default, all cores). `head`: the global
    head refitted for OpenVINO (`refitted_head`), put into the graph in memory."""

    def __init__(
        self,
        path: Path,
        precision: str = "fp32",
        threads: int | None = None,
        hint: str = "LATENCY",
        name: str = "openvino",
        model: str = "fp32",
        head: Path | None = None,
    ) -> None:
        require_precision(precision)
        if hint not in PERFORMANCE_HINTS:
            raise BackendError(f"unknown performance hint {hint!r}: choose one of {', '.join(PERFORMANCE_HINTS)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX model {self.path} does not exist: check the bundle")
        config = compile_config(precision, hint)
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.head = Path(head) if head is not None else None
        source, self.seven_bit_weights = openvino_source(self.path, precision, self.head)
        try:
            self.compiled = compile_cpu(source, config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own for bad files and configs
            raise BackendError(f"OpenVINO cannot open {self.path}: {e}") from None
        got = _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        if got != INFERENCE_PRECISION[precision]:
            raise BackendError(
                f"OpenVINO compiled {self.path.name} for {got}, not the {INFERENCE_PRECISION[precision]} asked for"
            )
        self.name = name
        self.model = model
        self.precision = precision
        self.hint = hint
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        notes = [f"{self.seven_bit_weights} weights in 7 bits"] if self.seven_bit_weights else []
        notes += ["global head refitted for OpenVINO"] if self.head is not None else []
        self.providers = [f"OpenVINO CPU ({', '.join([precision] + notes)})"]
        self.input_size, self._fixed_batch = self._read_io()
        self._request = self.compiled.create_infer_request()

    def arithmetic(self) -> str | bytes:
        """The ONNX graph whose arithmetic this backend runs: the file with OpenVINO's edits (`as_openvino_runs_it`:
        7-bit weights for signed activations), which the faithfulness check runs as written for its reference."""
        return openvino_source(self.path, self.precision)[0]

    def _read_io(self) -> tuple[tuple[int, int], int | None]:
        inputs = {i.get_any_name(): i for i in self.compiled.inputs}
        outputs = {o.get_any_name() for o in self.compiled.outputs}
        self._outputs = fetched_outputs(outputs)
        if "image" not in inputs or not {MAP_OUTPUT, SCORE_OUTPUT} <= outputs:
            raise BackendError(
                f"{self.path} is not an slsg model: it needs input 'image' and outputs "
                f"'anomaly_map', 'score' (has {sorted(inputs)} → {sorted(outputs)})"
            )
        shape = inputs["image"].get_partial_shape()
        if shape.rank.is_dynamic or len(shape) != 4 or shape[1].is_dynamic or shape[2].is_dynamic:
            raise BackendError(f"{self.path}: input 'image' must be [N,H,W,3] with a fixed H and W, got {shape}")
        fixed = shape[0].get_length() if shape[0].is_static else None
        return (shape[1].get_length(), shape[2].get_length()), fixed

    def run(self, batch_bgr: np.ndarray) -> Outputs:
        batch = check_batch(batch_bgr, self.input_size)
        if self._fixed_batch is not None and batch.shape[0] != self._fixed_batch:
            if self._fixed_batch != 1:
                raise BackendError(f"{self.path} takes batches of exactly {self._fixed_batch}, got {batch.shape[0]}")
            return Outputs.concat([self._run(batch[i : i + 1]) for i in range(batch.shape[0])])
        return self._run(batch)

    def infer_only(self) -> float:
        """Seconds of the bare compiled-model call on the last run's input (`slsg-edge bench`'s engine case)."""

        t0 = time.perf_counter()
        self._request.infer()
        return time.perf_counter() - t0

    def _run(self, batch: np.ndarray) -> Outputs:
        # Shared: the (contiguous) batch is read in place, and infer's own copy of every output is skipped — the
        # outputs are copied once, below. Copying both ways cost 0.4 ms of a 15 ms INT8 inference (measured).
        self._request.infer({"image": batch}, share_inputs=True, share_outputs=True)
        # The request's output tensors are reused by the next call: copy, or a caller keeping a result sees it change.
        named = {name: np.array(self._request.get_tensor(name).data, copy=True) for name in self._outputs}
        return outputs_from_named(named, batch.shape[0], self.input_size)

    def __call__(self, batch_bgr: np.ndarray) -> Outputs:
        """The `Predictor` form used by evaluation and parity checks."""
        return self.run(batch_bgr)
