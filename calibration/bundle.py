"""What `slsg export --int8` calls: calibration set, two INT8 flavours and the accuracy gate, into a bundle."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from calibration.accuracy import (
    AccuracyReport,
    EvalData,
    Outputs,
    compare,
    latency_ms,
    map_correlation,
    map_refusal,
    run_model,
)
from calibration.float_regions import FloatRegions
from calibration.int8 import (
    CPU,
    FLAVOUR_FILES,
    TRT,
    Int8Config,
    compute_ranges,
    count_int8_ops,
    default_exclusions,
    flavour_exclusions,
    preprocess_for_quantization,
    quantize_flavour,
)
from calibration.modelopt_path import FROM_ORT_METHOD, quantize_with_modelopt
from calibration.selection import CalibrationSet
from calibration.sensitivity import node_sensitivity
from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN

CALIBRATION_DIR = "calibration"
RANGES_FILE = "ranges.json"
CONFIG_FILE = "int8_config.json"
REPORT_FILE = "int8_report.json"
SENSITIVITY_IMAGES = 8

log = logging.getLogger(__name__)


@dataclass
class KernelSaturation:
    """A file whose quantisation holds and whose CPU kernels do not: its anomaly map follows FP32's when ONNX Runtime
    runs the file as written (the file's own INT8 arithmetic, as an exact integer engine computes it) and does not
    through ONNX Runtime's integer kernels — on x86 without VNNI these multiply u8×s8 pairs into 16-bit sums that
    saturate. Keeping layers in float does not repair a kernel: juice_bottle 512×256 on an AVX2 CPU, the u8 file's
    map r 0.54 fused and 0.90 as written; five fallback rounds (16 layers, 7.5 min) reached 0.88 and were refused."""

    map_pearson_as_written: float
    map_pearson_kernels: float

    def reason(self) -> str:
        return (f"ONNX Runtime's INT8 kernels on this CPU saturate: run as written (the file's own INT8 arithmetic) "
                f"its map correlates {self.map_pearson_as_written:.3f} with FP32's, through the kernels "
                f"{self.map_pearson_kernels:.3f} (x86 CPUs without VNNI multiply u8×s8 pairs into 16 bits); keeping "
                "layers in float cannot repair a kernel, so no fallback was tried")


@dataclass
class ModelSummary:
    file: str
    bytes: int
    latency_ms: float | None = None
    int8_ops: dict[str, int] = field(default_factory=dict)
    accuracy: AccuracyReport | None = None
    fallback_nodes: list[str] = field(default_factory=list)   # the layers this file keeps in float
    kept: bool = True                                          # False: it failed its gate and was removed
    saturated: KernelSaturation | None = None                  # its map fails only through this CPU's INT8 kernels


@dataclass
class Int8Report:
    """For the export's final table: FP32 vs each INT8 flavour (AUROC, correlation, size, CPU latency).

    Each flavour is gated on its own: `kept` lists the files that passed (and were written), `failure` says why
    each of the others was removed. `passed` is True when at least one INT8 file was kept."""

    passed: bool
    config: dict
    calibration: dict
    float_regions: dict
    fallback_nodes: list[str]
    fallback_rounds: int
    fp32: ModelSummary
    flavours: dict[str, ModelSummary]
    failure: list[str] = field(default_factory=list)
    adjusted: dict[str, dict] = field(default_factory=dict)   # flavour → what `adjust` did to its file
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def kernel_saturation(fp32_out: Outputs, flavour: str, model: Path, report: AccuracyReport, data: EvalData,
                      cfg: Int8Config) -> KernelSaturation | None:
    """The diagnosis for a file refused on its map through ONNX Runtime's integer kernels, or None (it is run as
    written anyway, its map passed, or its map also fails as written: then the quantisation is at fault and the
    fallback may help)."""
    if flavour in AS_WRITTEN or report.map_pearson >= cfg.min_map_correlation:
        return None
    as_written = map_correlation(fp32_out, run_model(model, data.images(), as_written=True))
    if map_refusal(as_written, cfg.min_map_correlation) is not None:
        return None
    return KernelSaturation(as_written, report.map_pearson)


def _gate(fp32_out: Outputs, models: dict[str, Path], data: EvalData, cfg: Int8Config,
          scores: dict[str, np.ndarray], known: dict[str, Outputs]) -> dict[str, AccuracyReport]:
    """Each file against FP32 on the gate's images (its outputs `known` where its adjustment computed them, else
    run here); each file's `score` on them goes into `scores`."""
    reports = {}
    for f, p in models.items():
        out = known[f] if f in known else run_model(p, data.images(), as_written=f in AS_WRITTEN)
        scores[f] = out.score
        reports[f] = compare(fp32_out, out, data, cfg.auroc_budget, cfg.min_map_correlation)
    return reports


def _quantize(pre: Path, ranges: Path, out_dir: Path, cfg: Int8Config, exclude: dict[str, list[str]],
              calib: CalibrationSet, flavours: tuple[str, ...] = (TRT, CPU)) -> dict[str, Path]:
    """The asked flavours, each keeping its own `exclude[flavour]` float; with `backend="modelopt"` ModelOpt makes
    the TensorRT one (same exclusions, same gate)."""
    out = {}
    for f in flavours:
        if f == TRT and cfg.backend == "modelopt":
            out[f] = quantize_with_modelopt(pre, calib, out_dir / FLAVOUR_FILES[TRT], cfg.modelopt_python,
                                            FROM_ORT_METHOD[cfg.method], list(exclude[f]))
        else:
            out[f] = quantize_flavour(pre, ranges, out_dir / FLAVOUR_FILES[f], f, cfg, exclude[f])
    return out


@dataclass
class Adjusted:
    """What an adjustment did to one model file: the record for the report (None: nothing to say) and, where its
    own pass computed them, the adjusted file's outputs on the gate's images (the gate then need not run it)."""

    record: dict | None
    outputs: Outputs | None = None


#: Called with each INT8 flavour and its model file after quantisation and before the gate; may rewrite the file's
#: float initializers (export refits the heads' statistics per file).
Adjust = Callable[[str, Path], Adjusted]


def quantize_bundle(fp32_onnx: Path, calib: CalibrationSet, out_dir: Path, cfg: Int8Config | None = None,
                    eval_data: EvalData | None = None, measure_latency: bool = True,
                    adjust: Adjust | None = None, reference: Outputs | None = None,
                    scores: dict[str, np.ndarray] | None = None) -> Int8Report:
    """Write `model.int8-s8.onnx`, `model.int8-u8.onnx` and `calibration/` into `out_dir`; gate and report.

    Without `eval_data` no gate runs (`passed` is True, accuracy None) — the export should always pass
    held-out good images. Each flavour is gated on its own: one that passes is frozen as it is, the fallback
    keeps more layers float only in the ones still failing, and a file that still fails is removed (a bundle
    never ships a model that failed its gate) while the other stays. `adjust` runs on every file the gate sees;
    `reference` is FP32's outputs on the gate's images where the caller has them already; `scores`, when given,
    receives each file's `score` on the gate's images as the gate computed them (the caller need not run them again).
    """
    cfg = cfg or Int8Config()
    scores = {} if scores is None else scores
    out_dir.mkdir(parents=True, exist_ok=True)
    calib_dir = calib.save(out_dir / CALIBRATION_DIR)
    (calib_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    with tempfile.TemporaryDirectory(prefix="slsg-int8-") as tmp:
        pre = preprocess_for_quantization(fp32_onnx, Path(tmp) / "pre.onnx")
        regions: FloatRegions = default_exclusions(pre, cfg)
        exclude = flavour_exclusions(regions)
        ranges = compute_ranges(pre, calib.tensors, cfg, calib_dir / RANGES_FILE,
                                float_nodes=set.intersection(*map(set, exclude.values())))
        models = _quantize(pre, ranges, out_dir, cfg, exclude, calib)
        adjusted, known = _adjust(models, adjust)
        float_nodes = {f: [] for f in models}
        fallback: list[str] = []
        rounds = 0
        gate: dict[str, AccuracyReport] = {}
        saturated: dict[str, KernelSaturation] = {}
        if eval_data is not None:
            fp32_out = reference if reference is not None else run_model(fp32_onnx, eval_data.images())
            gate = _gate(fp32_out, models, eval_data, cfg, scores, known)
            saturated = {f: d for f, r in gate.items() if not r.passed
                         and (d := kernel_saturation(fp32_out, f, models[f], r, eval_data, cfg)) is not None}
            for f, diagnosis in saturated.items():
                gate[f].reasons.append(diagnosis.reason())
            while True:
                failing = tuple(f for f in gate if not gate[f].passed and f not in saturated)
                if not (cfg.auto_fallback and failing and rounds < cfg.max_fallback_rounds
                        and len(fallback) < cfg.max_fallback_nodes):
                    break
                worst = min(failing, key=lambda f: _badness(gate[f]))
                candidates = [n for n in _quantizable_nodes(pre) if n not in set(exclude[worst])]
                probe = eval_data.images()[:SENSITIVITY_IMAGES]
                ranked = node_sensitivity(pre, models[worst], probe, candidates, as_written=worst in AS_WRITTEN)
                if not ranked:
                    break
                budget = cfg.max_fallback_nodes - len(fallback)
                take = [name for name, _ in ranked[:min(2 ** rounds, budget)]]
                rounds += 1
                fallback += take
                exclude = {f: names + take for f, names in exclude.items()}
                log.info("INT8 gate failed for %s (%s); keeping %s in float", ", ".join(failing),
                         "; ".join(gate[worst].reasons), take)
                redone = _quantize(pre, ranges, out_dir, cfg, exclude, calib, failing)
                models.update(redone)
                records, known = _adjust(redone, adjust)
                adjusted.update(records)
                float_nodes.update({f: list(fallback) for f in failing})
                gate.update(_gate(fp32_out, redone, eval_data, cfg, scores, known))
    sample = calib.tensors[0]
    flavours = {f: ModelSummary(file=p.name, bytes=p.stat().st_size, int8_ops=count_int8_ops(p, f in AS_WRITTEN),
                                latency_ms=latency_ms(p, sample, as_written=f in AS_WRITTEN)
                                if measure_latency else None,
                                accuracy=gate.get(f), fallback_nodes=float_nodes[f], saturated=saturated.get(f))
                for f, p in models.items()}
    fp32 = ModelSummary(file=fp32_onnx.name, bytes=fp32_onnx.stat().st_size,
                        latency_ms=latency_ms(fp32_onnx, sample) if measure_latency else None)
    failure = [f"{f}: {reason}" for f, r in gate.items() for reason in r.reasons]
    for f, summary in flavours.items():
        summary.kept = not gate or gate[f].passed
        if summary.kept and gate and not summary.int8_ops.get("int8_weights"):
            summary.kept = False
            failure.append(f"{f}: fallback kept every layer in float: no INT8 model worth shipping")
        if not summary.kept:
            models[f].unlink(missing_ok=True)
            failure.append(f"{f}: removed: it failed the accuracy gate after {rounds} fallback round(s) "
                           f"keeping {len(summary.fallback_nodes)} layer(s) float")
    kept = [f for f, s in flavours.items() if s.kept]
    report = Int8Report(passed=bool(kept), config=cfg.to_dict(),
                        calibration={**calib.manifest(), "images": len(calib.paths)},
                        float_regions=regions.to_dict(), fallback_nodes=fallback, fallback_rounds=rounds,
                        fp32=fp32, flavours=flavours, failure=failure, adjusted=adjusted, kept=kept)
    (calib_dir / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n")
    return report


def _adjust(models: dict[str, Path], adjust: Adjust | None) -> tuple[dict[str, dict], dict[str, Outputs]]:
    """Each file adjusted: (its record, its outputs on the gate's images where the adjustment computed them)."""
    if adjust is None:
        return {}, {}
    done = {f: adjust(f, p) for f, p in models.items()}
    return ({f: a.record for f, a in done.items() if a.record is not None},
            {f: a.outputs for f, a in done.items() if a.outputs is not None})


def _badness(report: AccuracyReport) -> float:
    """Which flavour to repair first: the lower map correlation (NaN counts as worst)."""
    return report.map_pearson if np.isfinite(report.map_pearson) else -np.inf


def _quantizable_nodes(pre: Path) -> list[str]:
    return [n.name for n in onnx.load(str(pre)).graph.node
            if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Resize", "Concat")]


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
