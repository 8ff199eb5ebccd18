"""The machine's measured GEMM peak at a given thread count, and each backend's time as a multiple of its floor.

The peak is what ONNX Runtime itself reaches on one big square product (fp32 `MatMul`; int8 `MatMulInteger`
and `QLinearMatMul`, uint8 activations × int8 weights, the x86 fast path), so the floor
2·MACs / peak is a floor this library on this CPU could approach, not a datasheet number.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

GEMM_KINDS = ("fp32", "int8-matmulinteger", "int8-qlinearmatmul")


def gemm_model(kind: str, n: int):
    """An ONNX model `a [n,n] → y = a·B` with B a constant (weights), in the given arithmetic."""
    from onnx import TensorProto, helper, numpy_helper

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
    else:
        raise ValueError(f"unknown GEMM kind {kind!r}: choose one of {', '.join(GEMM_KINDS)}")
    graph = helper.make_graph(nodes, f"gemm_{kind}", [helper.make_tensor_value_info("a", a_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def measure_gemm(kind: str, n: int, threads: int | None, repeats: int = 10) -> float:
    """Best-of-`repeats` ops/s (2·n³ per product) of one ONNX Runtime session on the CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(gemm_model(kind, n).SerializeToString(), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(np.float32) if kind == "fp32" else \
        rng.integers(0, 256, (n, n), dtype=np.uint8)
    session.run(None, {"a": a})
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        session.run(None, {"a": a})
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


@dataclass
class Peaks:
    """Measured peaks in ops per second; int8 is the better of the two int8 operators."""

    n: int
    threads: int | None
    fp32: float
    int8_matmulinteger: float
    int8_qlinearmatmul: float

    @property
    def int8(self) -> float:
        return max(self.int8_matmulinteger, self.int8_qlinearmatmul)

    def to_dict(self) -> dict:
        return {**asdict(self), "int8": self.int8}


def measure_peaks(threads: int | None, n: int = 1024, repeats: int = 10) -> Peaks:
    return Peaks(n, threads, *(measure_gemm(k, n, threads, repeats) for k in GEMM_KINDS))


def floor_ms(macs: int, peak_ops: float) -> float:
    """The time the model's MACs take at the peak: 2·MACs / peak, in milliseconds."""
    if peak_ops <= 0:
        raise ValueError(f"peak must be positive, got {peak_ops}")
    return 2.0 * macs / peak_ops * 1e3


#: Which floor a backend is judged against (its arithmetic); TensorRT on a GPU has no CPU floor.
FLOOR_OF = {"torch": "fp32", "onnx": "fp32", "onnx-fp16": "fp32", "onnx-int8": "int8"}


def floors_for(backends: list[str], macs: int, peaks: Peaks) -> dict[str, dict]:
    """{backend: {"arith", "floor_ms"}} for backends running on this CPU."""
    out = {}
    for name in backends:
        arith = FLOOR_OF.get(name)
        if arith is None:
            continue
        peak = peaks.fp32 if arith == "fp32" else peaks.int8
        out[name] = {"arith": arith, "peak_ops": peak, "floor_ms": floor_ms(macs, peak)}
    return out

