"""The machine's measured GEMM peaks at a given thread count, and each backend's time as a multiple of its floor.

A peak is what a library itself reaches on one big square product at the benchmark's thread count: ONNX Runtime
fp32 `MatMul` and int8 (`MatMulInteger`, `QLinearMatMul`, uint8 × int8, the x86 fast path); OpenVINO's CPU plugin
on the same fp32 `MatMul` compiled for f32 and for bf16 (where the CPU has it), and on a Q/DQ `MatMul` it runs in
int8. So each case's floor 2·MACs / peak is one its own library on this CPU could approach, not a datasheet number.
`peak_cases` times the products as cases of the benchmark's alternating run, so a peak sees the same load as
the cases judged against it and the floor multiples hold still on a shared machine. Each turn runs a short burst
and keeps the warm products: after other work the first AMX/VNNI product of a turn is 20–35 % slower (measured,
2048², 2 threads: OpenVINO bf16 22.6 → 17.0 ms, int8 15.7 → 12.3, ORT MatMulInteger 8.9 → 5.6 from the first
product of a burst to the third; ORT fp32 flat), and a peak read from single products sat at 0.7× the
standalone rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edge_runtime.backends.openvino_backend import (
    compile_config,
    compile_cpu,
    cpu_capabilities,
    openvino_available,
)
from edge_runtime.timing import Case, percentile, timed

GEMM_KINDS = ("fp32", "int8-matmulinteger", "int8-qlinearmatmul")
#: OpenVINO peaks: (model kind, inference precision).
OPENVINO_GEMMS = {
    "openvino_fp32": ("fp32", "fp32"),
    "openvino_bf16": ("fp32", "bf16"),
    "openvino_int8": ("qdq", "fp32"),
}


def gemm_model(kind: str, n: int):
    """An ONNX model `a [n,n] → y = a·B` with B a constant (weights), in the given arithmetic."""

    rng = np.random.default_rng(0)
    if kind == "fp32":
        b = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "b")
        nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
        inits, a_type, y_type = [b], TensorProto.FLOAT, TensorProto.FLOAT
    elif kind == "int8-matmulinteger":
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "b")
        azp = numpy_helper.from_array(np.array(128, np.uint8), "azp")
        nodes = [helper.make_node("MatMulInteger", ["a", "b", "azp"], ["y"])]
        inits, a_type, y_type = [b, azp], TensorProto.UINT8, TensorProto.INT32
    elif kind == "int8-qlinearmatmul":
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "b")
        consts = [
            numpy_helper.from_array(np.array(v, dt), name)
            for name, v, dt in (("as", 0.02, np.float32), ("az", 128, np.uint8), ("bs", 0.01, np.float32),
                                ("bz", 0, np.int8), ("ys", 0.5, np.float32), ("yz", 128, np.uint8))
        ]
        nodes = [helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])]
        inits, a_type, y_type = [b, *consts], TensorProto.UINT8, TensorProto.UINT8
    elif kind == "qdq":  # float in and out, int8 inside: what OpenVINO turns into an int8 GEMM
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "b")
        consts = [numpy_helper.from_array(np.array(v, dt), name)
                  for name, v, dt in (("as", 0.02, np.float32), ("az", 0, np.int8), ("bs", 0.01, np.float32),
                                      ("bz", 0, np.int8))]
        nodes = [helper.make_node("QuantizeLinear", ["a", "as", "az"], ["aq"]),
                 helper.make_node("DequantizeLinear", ["aq", "as", "az"], ["adq"]),
                 helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bdq"]),
                 helper.make_node("MatMul", ["adq", "bdq"], ["y"])]
        inits, a_type, y_type = [b, *consts], TensorProto.FLOAT, TensorProto.FLOAT
    else:
        raise ValueError(f"unknown GEMM kind {kind!r}: choose one of {', '.join(GEMM_KINDS)} or qdq")
    graph = helper.make_graph(nodes, f"gemm_{kind}", [helper.make_tensor_value_info("a", a_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _gemm_input(kind: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    if kind in ("fp32", "qdq"):
        return rng.standard_normal((n, n)).astype(np.float32)
    return rng.integers(0, 256, (n, n), dtype=np.uint8)


def ort_gemm(kind: str, n: int, threads: int | None) -> Callable[[], object]:
    """One product in an ONNX Runtime CPU session, ready to call (spinning off: it takes turns with others)."""

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(gemm_model(kind, n).SerializeToString(), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    feed = {"a": _gemm_input(kind, n)}
    session.run(None, feed)
    return lambda: session.run(None, feed)


def openvino_gemm(peak: str, n: int, threads: int | None) -> Callable[[], object] | None:
    """One product compiled by OpenVINO's CPU plugin (None where OpenVINO or, for bf16, the CPU lacks it)."""

    if not openvino_available():
        return None
    kind, precision = OPENVINO_GEMMS[peak]
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        return None
    config = compile_config(precision)
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = compile_cpu(gemm_model(kind, n).SerializeToString(), config)
    request, a = compiled.create_infer_request(), _gemm_input(kind, n)
    request.infer({0: a})
    return lambda: request.infer({0: a})


def gemm_runners(threads: int | None, n: int) -> dict[str, Callable[[], object]]:
    """Peak name → a ready product; OpenVINO's only where it is installed (bf16 only where the CPU has it)."""
    runners: dict[str, Callable[[], object]] = {
        "fp32": ort_gemm("fp32", n, threads),
        "int8_matmulinteger": ort_gemm("int8-matmulinteger", n, threads),
        "int8_qlinearmatmul": ort_gemm("int8-qlinearmatmul", n, threads),
    }
    for peak in OPENVINO_GEMMS:
        run = openvino_gemm(peak, n, threads)
        if run is not None:
            runners[peak] = run
    return runners


def measure_gemm(kind: str, n: int, threads: int | None, repeats: int = 10) -> float:
    """Best-of-`repeats` ops/s (2·n³ per product) of one ONNX Runtime session on the CPU."""
    run = ort_gemm(kind, n, threads)
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


@dataclass
class Peaks:
    """Measured peaks in ops per second; int8 is the better of ORT's two int8 operators; OpenVINO's are None
    where it (or, for bf16, the CPU's bf16) is absent. `how` says whether they are best-of or interleaved p50."""

    n: int
    threads: int | None
    fp32: float
    int8_matmulinteger: float
    int8_qlinearmatmul: float
    openvino_fp32: float | None = None
    openvino_bf16: float | None = None
    openvino_int8: float | None = None
    how: str = "best of repeats, measured apart"

    @property
    def int8(self) -> float:
        return max(self.int8_matmulinteger, self.int8_qlinearmatmul)

    def to_dict(self) -> dict:
        return {**asdict(self), "int8": self.int8}


def measure_peaks(threads: int | None, n: int = 1024, repeats: int = 10) -> Peaks:
    return Peaks(n, threads, *(measure_gemm(k, n, threads, repeats) for k in GEMM_KINDS))


PEAK_PREFIX = "peak "
#: Products per turn of a peak case: the first warms the units up and is dropped (see the module docstring).
PEAK_BURST = 4
#: The stage a peak case reports: the median of its warm products, in milliseconds.
PRODUCT_STAGE = "product"


def warm_product_ms(run: Callable[[], object], burst: int = PEAK_BURST) -> dict[str, float]:
    """Run `burst` products back to back; {PRODUCT_STAGE: median ms of all but the first} (the only one, if 1)."""

    times = [timed(run)[1] for _ in range(max(1, burst))]
    return {PRODUCT_STAGE: percentile(times[1:] or times, 50.0)}


def peak_cases(runners: dict[str, Callable[[], object]]):
    """The products as cases for `edge_runtime.timing.run_alternating`, named `peak <name>`; each turn a burst."""

    return [Case(PEAK_PREFIX + name, (lambda run=run: warm_product_ms(run)), "gemm")
            for name, run in runners.items()]


def peaks_from_timings(timings: dict, n: int, threads: int | None) -> Peaks:
    """Peaks from the p50 over rounds of the interleaved `peak <name>` cases' warm products: measured in the same
    rounds, under the same load, as the cases judged against them (best-of peaks taken apart moved by 45 % between
    runs here)."""

    def product_ms(t) -> list[float]:
        return t.stages_ms.get(PRODUCT_STAGE) or t.end_to_end_ms

    ops = {name[len(PEAK_PREFIX):]: 2.0 * n**3 / (percentile(product_ms(t), 50.0) / 1e3)
           for name, t in timings.items() if name.startswith(PEAK_PREFIX)}
    return Peaks(n, threads, ops["fp32"], ops["int8_matmulinteger"], ops["int8_qlinearmatmul"],
                 ops.get("openvino_fp32"), ops.get("openvino_bf16"), ops.get("openvino_int8"),
                 how=f"p50 of warm products (bursts of {PEAK_BURST}, the first dropped) interleaved with the rounds")


def floor_ms(macs: int, peak_ops: float) -> float:
    """The time the model's MACs take at the peak: 2·MACs / peak, in milliseconds."""
    if peak_ops <= 0:
        raise ValueError(f"peak must be positive, got {peak_ops}")
    return 2.0 * macs / peak_ops * 1e3


#: Which floor a backend is judged against: (arithmetic, the `Peaks` field of its own library's product);
#: TensorRT on a GPU has no CPU floor.
FLOOR_OF = {"torch": ("fp32", "fp32"), "onnx": ("fp32", "fp32"), "onnx-fp16": ("fp32", "fp32"),
            "onnx-int8": ("int8", "int8"), "openvino": ("fp32", "openvino_fp32"),
            "openvino-bf16": ("bf16", "openvino_bf16"), "openvino-int8": ("int8", "openvino_int8")}


def floors_for(backends: list[str], macs: int, peaks: Peaks) -> dict[str, dict]:
    """{backend: {"arith", "peak", "floor_ms"}} for backends running on this CPU whose peak was measured."""
    out = {}
    for name in backends:
        if name not in FLOOR_OF:
            continue
        arith, field_name = FLOOR_OF[name]
        peak = getattr(peaks, field_name)
        if peak is None:
            continue
        out[name] = {"arith": arith, "peak": field_name, "peak_ops": peak, "floor_ms": floor_ms(macs, peak)}
    return out

