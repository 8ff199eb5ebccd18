"""`slsg export --fp16/--int8`: calibrate on the RUN's own good training images, gate on held-out data.

Calibration images come from the training split only; the accuracy gate uses the validation good images
(never seen by calibration) and, when the dataset has them, test anomalies — a check, not a selection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.bundle import load_bundle, write_manifest
from export.onnx_export import ExportError

GATE_IMAGES = 48  # per kind: enough for a stable AUROC delta, cheap on a CPU


@dataclass
class PrecisionReport:
    int8: dict | None = None
    fp16: dict | None = None


def _gate_images(samples, size: int, limit: int, seed: int) -> np.ndarray | None:
    from slsg.data.loading import load_images

    if not samples:
        return None
    picked = [samples[i] for i in sorted(np.random.default_rng(seed).permutation(len(samples))[:limit])]
    images, _ = load_images(picked, size)
    return np.stack(images) if images else None


def _run_data(run):
    from slsg.data import open_dataset
    from slsg.training.config import TrainConfig
    from slsg.training.data import split_validation

    data = run.config.get("data") or {}
    root = data.get("root")
    if not root or not Path(root).is_dir():
        raise ExportError(f"--int8 calibrates on the RUN's training images, but their folder ({root}) is not "
                          "reachable from here: export on the training machine, or next to the dataset")
    category = open_dataset(Path(root))[0]
    cfg = TrainConfig.from_dict(run.config.get("train", {}))
    train, val = split_validation(category, cfg.val_fraction, cfg.seed)
    return category, train, val, cfg.seed


def add_precisions(stage: Path, run, *, fp16: bool, int8: bool, calib_size: int, strategy: str,
                   method: str = "minmax", auroc_budget: float = 0.01, auto_fallback: bool = True,
                   int8_backend: str = "ort", modelopt_python: str | None = None,
                   say: Callable[[str], None] = print) -> PrecisionReport:
    """Write model.int8.onnx, model.int8-cpu.onnx, calibration/ and/or model.fp16.onnx into the staged bundle."""
    from calibration.accuracy import EvalData
    from calibration.bundle import quantize_bundle
    from calibration.fp16 import export_fp16
    from calibration.int8 import Int8Config, QuantizationError
    from calibration.selection import select_calibration_set

    calib_size, strategy = calib_size or 256, strategy or "random"
    bundle = load_bundle(stage)
    size = bundle.size
    category, train, val, seed = _run_data(run)
    good = _gate_images(val, size, GATE_IMAGES, seed)
    bad = _gate_images([s for s in category.test if s.kind != "good"], size, GATE_IMAGES, seed)
    manifest = dict(bundle.manifest)
    report = PrecisionReport()
    if int8:
        if good is None:
            raise ExportError("--int8 needs held-out good images for its accuracy gate; this RUN has no "
                              "validation split (train with --val-fraction > 0 or a LOCO validation/ folder)")
        say(f"calibrating INT8 on {min(calib_size, len(train))} of {len(train)} good training images ({strategy})")
        calib = select_calibration_set(train, size, n=calib_size, strategy=strategy, seed=seed)
        cfg = Int8Config(method=method, calib_size=calib_size, strategy=strategy, seed=seed,
                         auroc_budget=auroc_budget, auto_fallback=auto_fallback, backend=int8_backend,
                         modelopt_python=modelopt_python)
        try:
            result = quantize_bundle(stage / "model.onnx", calib, stage, cfg,
                                     EvalData(good, bad, bundle.threshold.value))
        except QuantizationError as err:  # e.g. ModelOpt not configured or failing: message says what to do
            raise ExportError(str(err)) from None
        if not result.passed:
            raise ExportError("INT8 failed its accuracy gate: " + "; ".join(result.failure) +
                              " — export without --int8, or with a larger --calib-size")
        manifest["models"] = {**manifest.get("models", {}), "int8": "model.int8.onnx",
                              "int8-cpu": "model.int8-cpu.onnx"}
        spec = calib.manifest()
        # `tensors` is the bundle-relative file the TensorRT legacy calibrator reads; its layout stays beside it.
        manifest["calibration"] = {**spec, "folder": "calibration", "tensors": "calibration/tensors.npy",
                                   "tensors_spec": spec["tensors"], "method": method,
                                   "int8_backend": int8_backend}
        report.int8 = result.to_dict()
        manifest["int8_report"] = _compact(report.int8)
    if fp16:
        say("converting to FP16 (graph block and scoring stay FP32)")
        result16 = export_fp16(stage / "model.onnx", stage / "model.fp16.onnx",
                               good if good is not None else None)
        manifest["models"] = {**manifest.get("models", {}), "fp16": "model.fp16.onnx"}
        report.fp16 = result16.to_dict()
        manifest["fp16_report"] = report.fp16
    write_manifest(stage, manifest)
    load_bundle(stage)
    return report


def _compact(report: dict) -> dict:
    """What the manifest keeps of the INT8 report: the gate's numbers, not the per-node details."""
    keep = ("passed", "fallback_nodes", "fallback_rounds", "fp32", "flavours", "config")
    return {k: report[k] for k in keep if k in report}


def precision_table(report: PrecisionReport):
    """FP32 vs each INT8 flavour (and FP16): AUROC, map correlation, size, CPU latency."""
    from rich.table import Table

    table = Table(title="precisions (ONNX Runtime, this CPU)")
    for col in ("model", "AUROC", "ΔAUROC", "map corr.", "score ρ", "size (MB)", "CPU ms"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def fmt(v, spec=".3f"):
        return "–" if v is None else format(v, spec)

    if report.int8:
        fp32 = report.int8["fp32"]
        acc0 = next((f["accuracy"] for f in report.int8["flavours"].values() if f.get("accuracy")), None)
        table.add_row("fp32", fmt(acc0 and acc0["auroc_fp32"]), "", "1.000", "1.000",
                      fmt(fp32["bytes"] / 1e6, ".1f"), fmt(fp32["latency_ms"], ".1f"))
        for name, f in report.int8["flavours"].items():
            a = f.get("accuracy") or {}
            table.add_row(name, fmt(a.get("auroc_int8")), fmt(a.get("auroc_drop") and -a["auroc_drop"], "+.3f"),
                          fmt(a.get("map_pearson")), fmt(a.get("score_spearman")), fmt(f["bytes"] / 1e6, ".1f"),
                          fmt(f["latency_ms"], ".1f"))
    if report.fp16:
        r = report.fp16
        table.add_row("fp16", "–", "", fmt(r["map_pearson"]), "–", fmt(r["bytes"] / 1e6, ".1f"), "–")
    return table
