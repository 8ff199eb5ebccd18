"""INT8 Q/DQ models from one calibration: a symmetric flavour for TensorRT and a u8×s8 flavour for ORT on x86.

Ranges are computed once per method (and cached as JSON beside the calibration set), then both flavours
and every fallback retry re-use them: only the Q/DQ placement changes between them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.quantization.calibrate import (
    TensorsData,
    create_calibrator,
    load_tensors_data,
    save_tensors_data,
)

from calibration.float_regions import FloatRegions, find_float_regions, name_nodes
from calibration.reader import TensorReader
from calibration.selection import DEFAULT_CALIB_SIZE
from edge_runtime.backends.faithful import MIN_MAP_CORRELATION
from edge_runtime.backends.onnxruntime_backend import cpu_session, session_options
from edge_runtime.backends.passes import pass_workers, run_batches, session_threads
from edge_runtime.errors import SlsgError
from edge_runtime.heads.graph import nodes_computing, tensor_types
from edge_runtime.progress import ProgressLines

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
#: The two flavours: file name and what each runtime wants.
TRT, CPU = "int8-s8", "int8-u8"
BACKENDS = ("ort", "modelopt")
FLAVOUR_FILES = {TRT: "model.int8-s8.onnx", CPU: "model.int8-u8.onnx"}
#: Flavours whose global-head context convolutions are quantised. Measured 2026-12-03 with each file's head
#: refitted: the symmetric file passes both gates with them in INT8 (bottle AUROC 1.000, juice_bottle 0.986 against
#: 0.989 FP32) and OpenVINO runs it 1.5 ms (5 %) faster at 256²; the u8 file then failed its gate on both sets even
#: with 16 layers float (map r 0.74 / 0.65: the fallback spent its layers on the context stage), so it keeps them
#: float.
CONTEXT_IN_INT8 = (TRT,)
INT8_OPS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "QGemm")


class QuantizationError(SlsgError, RuntimeError):
    """Quantisation could not produce a model; the message names the step and the way out."""


@dataclass
class Int8Config:
    """How the INT8 models are made; saved beside them so every model says how it was made."""

    method: str = "minmax"               # minmax | entropy | percentile (measured: docs/calibration.md)
    calib_size: int = DEFAULT_CALIB_SIZE
    strategy: str = "random"             # random | stratified | diverse
    seed: int = 0
    auroc_budget: float = 0.01           # allowed AUROC drop (1 point)
    min_map_correlation: float = MIN_MAP_CORRELATION  # pixel Pearson of INT8 vs FP32 maps, even without anomalies
    auto_fallback: bool = True
    percentile: float = 99.999
    num_bins: int = 512                  # histogram bins (entropy needs ≫ num_quantized_bins)
    num_quantized_bins: int = 128
    batch_size: int = 1
    per_channel: bool = True
    dedicated_qdq_pairs: bool = True     # per-reader Q/DQ pairs (cpu flavour): fusable convs
    max_fallback_rounds: int = 6
    max_fallback_nodes: int = 16         # --int8-fallback: most layers the fallback may keep float (0: none)
    extra_exclude: list[str] = field(default_factory=list)
    progress: bool = True
    backend: str = "ort"                 # who makes model.int8-s8.onnx: ort | modelopt (int8-u8 is always ORT's)
    modelopt_python: str | None = None   # ModelOpt venv's python; None → $SLSG_MODELOPT_PYTHON

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; "
                             f"choose one of {', '.join(METHODS)}")
        if self.method == "entropy" and self.num_bins <= self.num_quantized_bins:
            raise ValueError(f"entropy needs num_bins > num_quantized_bins ({self.num_bins} ≤ "
                             f"{self.num_quantized_bins}); with equal bins it silently equals minmax")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown INT8 backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend == "modelopt" and self.method not in ("minmax", "entropy"):
            raise ValueError(f"ModelOpt calibrates with minmax (its 'max') or entropy, not {self.method!r}")

    def to_dict(self) -> dict:
        """Saved into the bundle: a local interpreter path says nothing on another machine."""
        return {k: v for k, v in asdict(self).items() if k != "modelopt_python"}


def preprocess_for_quantization(fp32_onnx: Path, out: Path) -> Path:
    """ORT's pre-processing (shape inference, BN folding) and a name on every node.

    It runs inside the output's folder: ORT writes its scratch files (sym_shape_infer_temp.onnx, *.data)
    into the current directory, which must not be the user's.
    """
    fp32_onnx, out = Path(fp32_onnx).resolve(), Path(out).resolve()
    cwd = os.getcwd()
    os.chdir(out.parent)
    try:
        quant_pre_process(str(fp32_onnx), str(out))
    except Exception as err:  # symbolic shape inference gives up on torch exports with dynamic batch
        logging.getLogger(__name__).info("symbolic shape inference failed (%s); retrying without it", err)
        quant_pre_process(str(fp32_onnx), str(out), skip_symbolic_shape=True)
    finally:
        os.chdir(cwd)
    model = name_nodes(onnx.load(str(out)))
    onnx.save(model, str(out))
    return out


def input_name(model_path: Path) -> str:
    return onnx.load(str(model_path), load_external_data=False).graph.input[0].name


def compute_ranges(model: Path, tensors: np.ndarray, cfg: Int8Config, cache: Path,
                   float_nodes: Collection[str] = ()) -> Path:
    """Run the calibration images through `model` once and store its tensor ranges as JSON (ONNX Runtime's format).

    minmax (the default) takes each tensor's smallest and largest value over the images in one pass of our own
    (`minmax_ranges`): only the tensors a quantiser reads a range of, through the part of the graph that computes
    them. The histogram methods go through ONNX Runtime's calibrator, built here rather than inside `quantize_static`
    because that path gives the entropy method 128 bins for 128 quantised bins — a single candidate threshold, i.e.
    minmax under another name. Its session runs with ONNX Runtime's graph optimisations on (the calibrator turns them
    all off): every tensor it measures is read by its own ReduceMin/ReduceMax, so it is still computed, and the
    ranges agree to 1e-5 of their width while an image takes a third less time (juice_bottle 512×256: 0.16 s against
    0.25 s)."""
    if cfg.method == "minmax":
        ranges = minmax_ranges(onnx.load(str(model)), tensors, float_nodes, cfg.progress, cfg.batch_size)
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)
        return cache
    options = {"num_bins": cfg.num_bins}
    if cfg.method == "entropy":
        options["num_quantized_bins"] = cfg.num_quantized_bins
    if cfg.method == "percentile":
        options["percentile"] = cfg.percentile
    reader = TensorReader(tensors, input_name(model), cfg.batch_size, cfg.progress,
                          f"calibrating ({cfg.method}, {len(tensors)} images)")
    with tempfile.TemporaryDirectory(prefix="slsg-calib-") as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        calibrator = create_calibrator(model, None, augmented_model_path=str(augmented),
                                       calibrate_method=METHODS[cfg.method], extra_options=options)
        calibrator.infer_session = _RunAhead(cpu_session(augmented, session_threads(pass_workers())), tensors,
                                             reader.batch_size)
        calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache)
    return cache


def quantised_tensors(model: onnx.ModelProto, float_nodes: Collection[str] = ()) -> list[str]:
    """The float tensors a quantiser may read a range of: every activation read or written by a node outside
    `float_nodes` (those every flavour keeps float). Ranges are read for nothing else, and fallback rounds only add
    float nodes, so these serve every flavour and every round."""
    graph, skip, types = model.graph, set(float_nodes), tensor_types(model)
    stored = {t.name for t in graph.initializer}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    names = (x for n in graph.node if n.name not in skip for x in (*n.input, *n.output))
    return list(dict.fromkeys(x for x in names if x and x not in stored and types.get(x) in floats))


def minmax_graph(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The part of `model` that computes `names`, whose outputs are each name's ReduceMin and ReduceMax
    (`{name}_ReduceMin`, `{name}_ReduceMax`): what computes only the graph's own outputs — the heads' scoring, SLSG's
    last layers — is left out (juice_bottle 512×256: 0.181 s an image against ONNX Runtime's calibrator's 0.195)."""
    g = model.graph
    needed = nodes_computing(g, names)
    nodes = [n for i, n in enumerate(g.node) if i in needed]
    outputs = []
    for name in names:
        for op in ("ReduceMin", "ReduceMax"):
            nodes.append(onnx.helper.make_node(op, [name], [f"{name}_{op}"], keepdims=1, name=f"{name}_{op}"))
            outputs.append(onnx.helper.make_tensor_value_info(f"{name}_{op}", onnx.TensorProto.FLOAT, None))
    used = {x for n in nodes for x in n.input}
    part = onnx.helper.make_graph(nodes, f"{g.name}_minmax", list(g.input), outputs,
                                  [t for t in g.initializer if t.name in used])
    return onnx.helper.make_model(part, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def minmax_ranges(model: onnx.ModelProto, tensors: np.ndarray, float_nodes: Collection[str] = (),
                  progress: bool = True, batch: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tensor: (lowest, highest)} over the calibration `tensors` for each of `quantised_tensors`, exactly as ONNX
    Runtime's minmax calibrator gives them (float32 arrays of one value), from one pass of `minmax_graph` in ONNX
    Runtime, one image per core."""
    names = quantised_tensors(model, float_nodes)
    graph = minmax_graph(model, names).SerializeToString()
    wanted = [f"{name}_{op}" for name in names for op in ("ReduceMin", "ReduceMax")]
    image = model.graph.input[0].name
    workers = pass_workers()
    session = cpu_session(graph, session_threads(workers))

    def run(part: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(wanted, session.run(wanted, {image: part})))

    low = {name: np.inf for name in names}
    high = {name: -np.inf for name in names}
    shown = ProgressLines(f"calibrating (minmax, {len(tensors)} images)", len(tensors), unit="image") \
        if progress else None
    for part, got in run_batches(run, tensors, batch, workers):
        for name in names:
            low[name] = min(low[name], float(np.min(got[f"{name}_ReduceMin"])))
            high[name] = max(high[name], float(np.max(got[f"{name}_ReduceMax"])))
        if shown is not None:
            shown.update(advance=len(part))
    if shown is not None:
        shown.close()
    return {name: (np.array([low[name]], np.float32), np.array([high[name]], np.float32)) for name in names}


class _RunAhead:
    """The calibrator's session with the calibration batches already under way, one per core
    (`edge_runtime.backends.passes`): ONNX Runtime's `collect_data` asks for them one at a time, in the reader's
    order, and gets each as it is done."""

    def __init__(self, session: ort.InferenceSession, tensors: np.ndarray, batch: int) -> None:
        self._session = session
        name = session.get_inputs()[0].name
        self._results = run_batches(lambda part: session.run(None, {name: part}), tensors, batch, pass_workers())

    def get_inputs(self) -> list:
        return self._session.get_inputs()

    def get_outputs(self) -> list:
        return self._session.get_outputs()

    def run(self, output_names: None, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch, values = next(self._results, (None, None))
        asked = next(iter(inputs.values()))
        if output_names is not None or batch is None or not np.array_equal(batch, asked):
            raise RuntimeError("the calibrator asked for other outputs or batches than the ones run ahead")
        return values


def tensor_ranges(cache: Path) -> dict[str, tuple[float, float]]:
    """(low, high) per calibrated tensor, read from the JSON cache."""
    data = load_tensors_data(cache)
    return {name: (float(np.min(r.range_value[0])), float(np.max(r.range_value[1])))
            for name, r in data.data.items()}


def tensorrt_extra_options() -> dict:
    """ORT options for the TensorRT flavour: what TensorRT's ONNX parser can import (export/trt_ops.lint_qdq).

    Symmetric int8 activations and weights (zero points 0), per-channel weights on each op's output-channel axis
    (ORT's defaults: Conv 0, ConvTranspose 1, Gemm by transB, MatMul 1), and **float biases**: ORT quantises
    biases to INT32 behind a DequantizeLinear by default, which no TensorRT parser takes ("only activation
    types allowed as input to this layer", onnx/onnx-tensorrt#850); TensorRT fuses a float bias itself.
    """
    return {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}


def activations_after_conv(model: onnx.ModelProto) -> list[str]:
    """Relu / Clip (ReLU6) nodes fed by a Conv alone: the symmetric flavour quantises their output, not their input.

    With symmetric activations ONNX Runtime cannot fold ReLU6 into a quantisation range (as it does with uint8), so
    by default it writes Conv → Q/DQ (the pre-activation range, mostly spent on negatives the Clip then drops) →
    Clip → Q/DQ: two roundings, one of them coarse. Measured on EfficientNet-Lite0: map correlation 0.949 → 0.990
    with Conv → Clip → Q/DQ, the placement TensorRT fuses into one INT8 convolution with its activation.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    return [n.name for n in model.graph.node
            if n.op_type in ("Relu", "Clip") and n.input and n.input[0] in producer
            and producer[n.input[0]].op_type == "Conv" and readers.get(n.input[0]) == 1]


def flavour_options(flavour: str, cfg: Int8Config) -> dict:
    if flavour == TRT:
        return {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8,
                "extra_options": {**tensorrt_extra_options(), "OpTypesToExcludeOutputQuantization": ["Conv"]}}
    if flavour == CPU:
        return {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
                "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True,
                                  "DedicatedQDQPair": cfg.dedicated_qdq_pairs}}
    raise ValueError(f"unknown INT8 flavour {flavour!r}; use {TRT!r} or {CPU!r}")


def quantize_flavour(pre: Path, cache: Path, out: Path, flavour: str, cfg: Int8Config,
                     exclude: list[str]) -> Path:
    """One Q/DQ model from cached ranges; `exclude` names the nodes that stay float (the symmetric flavour also
    leaves Conv outputs and their activations unquantised: `activations_after_conv`)."""
    opts = flavour_options(flavour, cfg)
    exclude = list(exclude) + (activations_after_conv(onnx.load(str(pre))) if flavour == TRT else [])
    quantize_static(str(pre), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                    per_channel=cfg.per_channel, nodes_to_exclude=exclude,
                    calibrate_method=METHODS[cfg.method], calibration_cache_path=str(cache),
                    activation_type=opts["activation_type"], weight_type=opts["weight_type"],
                    extra_options=opts["extra_options"])
    return out


def default_exclusions(pre: Path, cfg: Int8Config) -> FloatRegions:
    regions = find_float_regions(onnx.load(str(pre)))
    if cfg.extra_exclude:
        regions.graph_block = sorted(set(regions.graph_block) | set(cfg.extra_exclude))
    return regions


def flavour_exclusions(regions: FloatRegions) -> dict[str, list[str]]:
    """The nodes each flavour keeps float: the regions, with the global head's context stage quantised in the
    flavours of `CONTEXT_IN_INT8`."""
    return {f: regions.all(context=f not in CONTEXT_IN_INT8) for f in FLAVOUR_FILES}


def count_int8_ops(model: Path, as_written: bool = False) -> dict[str, int]:
    """What ONNX Runtime (CPU) actually runs in integer arithmetic after its own graph optimisation (none for a
    file it runs as written, `onnxruntime_backend.AS_WRITTEN`), and how many weights the file itself holds in INT8
    (`int8_weights`: what TensorRT runs in INT8, whichever way ORT's CPU kernels run them)."""
    with tempfile.TemporaryDirectory(prefix="slsg-opt-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        so = session_options(1, as_written)
        so.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized)).graph
    ops = [n.op_type for n in graph.node]
    counts = {op: ops.count(op) for op in INT8_OPS if op in ops}
    counts["float_conv"] = ops.count("Conv") + ops.count("FusedConv")
    counts["int8_weights"] = quantized_weights(model)
    return counts


def quantized_weights(model: Path) -> int:
    """DequantizeLinear nodes that read a stored tensor: weights kept in INT8 in the file."""
    graph = onnx.load(str(model), load_external_data=False).graph
    stored = {t.name for t in graph.initializer}
    return sum(1 for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in stored)
