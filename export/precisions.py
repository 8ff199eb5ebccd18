"""What the extra precisions of `slsg export` leave behind: which file each writes, what to try next when one is
left out, and the table that shows them. The gates themselves are in `export.gates`."""

from __future__ import annotations

import numpy as np
from rich.table import Table

from calibration.int8 import FLAVOUR_FILES
from edge_runtime.backends.openvino_backend import OPENVINO_PREFIX
from export.job import BundleOptions, PrecisionReport
from export.run_data import RunData

FP16_MIN_MAP_CORRELATION = 0.99
#: The model files each precision writes, and whether TensorRT reads them (the lint is fatal only for those).
#: bf16 is model.onnx compiled by OpenVINO for bf16 (calibration.bf16): no file of its own, so no lint of its own.
FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", **FLAVOUR_FILES, "bf16": "model.onnx"}
FOR_TENSORRT = {"fp32": True, "fp16": True, "int8-s8": True, "int8-u8": False, "bf16": False}


# ---------------------------------------------------------------- what to try next


def int8_next_steps(opts: BundleOptions, data: RunData | None, fallback_used: int) -> list[str]:
    """Real `slsg export` options that change what INT8 calibration and its gate do."""
    steps = []
    if opts.int8_fallback == 0:
        steps.append("--int8-fallback 16 (keep the most sensitive layers in float)")
    elif fallback_used >= opts.int8_fallback:
        steps.append(f"--int8-fallback {2 * opts.int8_fallback} (let the fallback keep more layers in float)")
    others = [m for m in ("percentile", "entropy", "minmax") if m != opts.calib_method]
    steps.append(f"--calib-method {others[0]} (another way to set the activation ranges)")
    size = opts.calib_size or 256
    if data is not None and len(data.train) > size:
        steps.append(f"--calib-size {min(2 * size, len(data.train))} (more calibration images)")
    if (opts.calib_strategy or "random") != "diverse":
        steps.append("--calib-strategy diverse (calibration images that cover the variety of the line)")
    if opts.int8_backend == "ort":
        steps.append("--int8-backend modelopt (NVIDIA ModelOpt makes model.int8-s8.onnx; see docs/calibration.md)")
    steps.append(f"--auroc-budget {2 * opts.auroc_budget:g} (accept a larger AUROC drop, knowingly)")
    if not opts.fp16:
        steps.append("--fp16 (FP16 keeps FP32's accuracy and still halves the compute on a Jetson)")
    return steps


def saturation_next_steps() -> list[str]:
    """For a file refused only because this CPU's INT8 kernels saturate (`calibration.bundle.KernelSaturation`)."""
    return ["export on the line PC if its CPU has VNNI (`grep -o -m1 'avx512_vnni\\|avx_vnni' /proc/cpuinfo` prints "
            "it): its kernels do not saturate, and the gate there decides",
            "on a CPU like this one, run the bundle's other models (FP32, OpenVINO, model.int8-s8.onnx where it was "
            "kept): `slsg-edge run --backend auto` measures which is fastest here"]


def no_data_next_steps(data: RunData | None, root: str | None) -> list[str]:
    if data is None:
        return [f"export on a machine where the RUN's dataset ({root or 'unknown'}) is reachable"]
    return ["give the RUN validation images: a LOCO validation/good folder, or train with a held-out slice "
            "(TrainConfig.val_fraction > 0)"]


def lint_next_steps() -> list[str]:
    return ["this is a toolkit bug (the quantiser emitted Q/DQ that TensorRT cannot parse): please report it with "
            "the manifest's export.tensorrt_lint section",
            "--int8-backend modelopt (NVIDIA's own quantiser for model.int8-s8.onnx)",
            "meanwhile model.int8-u8.onnx runs INT8 in ONNX Runtime (`slsg-edge run --backend onnxruntime`)"]


# ---------------------------------------------------------------- display


def precision_table(report: PrecisionReport):
    """Each model kept: AUROC and its drop with the bootstrap interval, map correlation, score ρ, its own
    threshold, the false-reject rate on held-out good images, size and CPU latency."""

    table = Table(title="precisions (ONNX Runtime unless named, this CPU)")
    for col in ("model", "AUROC", "ΔAUROC (95% interval)", "map r", "score ρ", "threshold",
                "held-out FRR", "MB", "CPU ms"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def fmt(v, spec=".3f"):
        return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)

    def frr(p):
        h = report.held_out.get(p)
        if not h:
            return "–"
        text = f"{h['false_reject_rate']:.1%} ({h['false_rejects']}/{h['n']})"
        at = h.get("at_fp32_threshold")
        return text if p == "fp32" or at is None else f"{text}; {at:.1%} at fp32's"

    def thr(p):
        t = report.thresholds.get(p)
        return "–" if not t else f"{t['value']:.4f}"

    int8 = report.int8  # every flavour measured, the ones left out marked so
    acc0 = next((f["accuracy"] for f in (int8 or {}).get("flavours", {}).values() if f.get("accuracy")), None)
    fp32 = (int8 or {}).get("fp32", {})
    table.add_row("fp32", fmt(acc0 and acc0["auroc_fp32"]), "", "1.000", "1.000", thr("fp32"), frr("fp32"),
                  fmt(fp32.get("bytes", 0) / 1e6 if fp32 else None, ".1f"), fmt(fp32.get("latency_ms"), ".1f"))
    for name, f in ((int8 or {}).get("flavours") or {}).items():
        a = f.get("accuracy") or {}
        label = name if f.get("kept", True) else f"{name} (left out)"
        table.add_row(label, fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr(name), frr(name), fmt(f["bytes"] / 1e6, ".1f"),
                      fmt(f["latency_ms"], ".1f"))
    for name, a in (report.openvino_int8 or {}).items():  # the same files as OpenVINO runs them: gated apart
        shipped = a.get("passed") and name not in report.left_out
        label = f"{name} (OpenVINO)" if shipped else f"{name} (OpenVINO, left out)"
        key = OPENVINO_PREFIX + name
        table.add_row(label, fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr(key), frr(key), "–", "–")
    if report.fp16 and "fp16" not in report.left_out:
        a = report.fp16.get("accuracy") or {}
        table.add_row("fp16", fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr("fp16"), frr("fp16"), fmt(report.fp16["bytes"] / 1e6, ".1f"),
                      "–")
    if report.bf16 and "bf16" not in report.left_out:
        a = report.bf16.get("accuracy") or {}
        table.add_row("bf16 (OpenVINO)", fmt(a.get("auroc_int8")), _drop(a), fmt(a.get("map_pearson")),
                      fmt(a.get("score_spearman")), thr("bf16"), frr("bf16"), "–", "–")
    return table


def _drop(a: dict) -> str:
    if a.get("auroc_drop") is None:
        return "–"
    if a.get("auroc_drop_low") is None:
        return f"{-a['auroc_drop']:+.4f}"
    return f"{-a['auroc_drop']:+.4f} ({-a['auroc_drop_high']:+.3f}…{-a['auroc_drop_low']:+.3f})"
