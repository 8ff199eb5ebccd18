"""TensorRT check for a Jetson or a dGPU: build every precision, compare each engine with ONNX Runtime
(fp32) on real images, time engine-only and end-to-end latency, print one table and write JSON. No torch.

    benchmarks/trt_check.sh BUNDLE --images DIR [--precisions fp32,fp16,int8] [--fused FUSED] [--json FILE]

BUNDLE is a standard-op bundle (ONNX Runtime runs its fp32 model: the reference). FUSED is the bundle of the
same run exported with --fused-graph-attention: on TensorRT ≥ 10.9 its engines are built with the
slsg::GraphAttention plugin and compared with the same reference; on older TensorRT its rows say why not.
Every row names the path its engine took (standard ops or the fused plugin; GPU or DLA core).

Each precision is built and run on its own: a parser, build or run failure of one is recorded with its
reason and the others still run; the table and the JSON are written whatever happened. Exit codes: 0 every
precision ran (or was skipped because the bundle lacks its model or TensorRT the plugin), 1 something failed,
2 no TensorRT here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_runtime.backends import OnnxRuntimeBackend
from edge_runtime.bundle import load_bundle
from edge_runtime.preprocess import prepare
from edge_runtime.tensorrt import (
    BuildSettings,
    PrecisionError,
    TensorRTBackend,
    TensorRTError,
    TensorRTMissing,
    build_engine,
    current_target,
)
from edge_runtime.tensorrt.parity import (
    latency_ms,
    map_correlation,
    max_abs_error,
    score_rank_correlation,
    verdict_agreement,
)
from edge_runtime.tensorrt.recipe import required_plugins

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _read_images(folder: Path, limit: int) -> list[np.ndarray]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    images = [img for img in (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths) if img is not None]
    if not images:
        raise SystemExit(f"error: no readable images under {folder} (png/jpg/bmp/tif); "
                         "latency and parity are measured on real frames, never on random tensors")
    return images


def _run_all(backend, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    outs = [backend.run(f[None]) for f in frames]
    return np.concatenate([o.maps for o in outs]), np.concatenate([o.score for o in outs])


def _end_to_end(backend, raw: list[np.ndarray], size: tuple[int, int], iterations: int) -> list[float]:
    out = []
    for i in range(iterations):
        t0 = time.perf_counter()
        backend.run(prepare(raw[i % len(raw)], size)[None])
        out.append(time.perf_counter() - t0)
    return out


def _engine_only(backend, frames: np.ndarray, iterations: int) -> list[float]:
    out = []
    for i in range(iterations):
        if i % 20 == 0:
            backend.run(frames[(i // 20) % len(frames)][None])   # rotate through real frames
        out.append(backend.infer_only())
    return out


def _failure(backend: str, stage: str, exc: BaseException) -> dict:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {"backend": backend, "status": "failed", "stage": stage, "error": f"{type(exc).__name__}: {first}",
            "detail": str(exc), "traceback": traceback.format_exception_only(type(exc), exc)[-1].strip()}


def engine_path_text(key) -> str:
    """Which path an engine took: the graph's ops (standard, or the fused AOT plugin) and the device."""
    ops = f"fused plugin {', '.join(key.plugins)} (AOT kernel in the engine)" if key.plugins else "standard ops"
    return f"{ops} · {'GPU' if key.dla_core < 0 else f'DLA core {key.dla_core}'}"


def _one_precision(bundle, precision: str, frames, raw, ref: dict, args, prefix: str = "tensorrt") -> dict:
    """Build + run one precision; every failure becomes a row with its stage and reason."""

    name = f"{prefix}-{precision}"
    try:
        built = build_engine(bundle, BuildSettings(precision=precision, workspace_mb=args.workspace_mb))
    except PrecisionError as exc:
        return {"backend": name, "status": "skipped", "stage": "plan", "error": str(exc)}
    except Exception as exc:  # parser, builder, CUDA: record and go on with the next precision
        return _failure(name, "build", exc)
    row = {"backend": name, "status": "ok", "engine": built.engine_path.name, "cached": built.cached,
           "build_s": round(built.seconds, 1), "path": engine_path_text(built.key)}
    try:
        with TensorRTBackend(built.engine_path) as trt:
            maps, scores = _run_all(trt, frames)
            threshold = bundle.threshold_for(trt.model).value
            row.update({"model": trt.model, "threshold": threshold,
                        "map_correlation": map_correlation(maps, ref["maps"]),
                        "max_abs_map_err": max_abs_error(maps, ref["maps"]),
                        "score_spearman": score_rank_correlation(scores, ref["scores"]),
                        "verdict_agreement": verdict_agreement(scores, threshold, ref["scores"], ref["threshold"])})
            _end_to_end(trt, raw, bundle.size, args.warmup)
            row["engine_ms"] = latency_ms(_engine_only(trt, frames, args.iterations))
            row["e2e_ms"] = latency_ms(_end_to_end(trt, raw, bundle.size, args.iterations))
    except Exception as exc:
        row.update(_failure(name, "run", exc))
    return row


def fused_rows(fused_dir: Optional[Path], bundle, api, precisions: list[str]) -> Optional[list[dict]]:
    """Rows for a fused bundle that cannot be built here (None: build it): absent, another size, or a TensorRT
    without ahead-of-time plugins (< 10.9)."""

    if fused_dir is None:
        return []
    names = [f"tensorrt-fused-{p}" for p in precisions]
    fused = load_bundle(fused_dir)
    if not required_plugins(fused.manifest):
        why = f"{fused_dir} holds no fused plugin (export it with --fused-graph-attention)"
        return [{"backend": n, "status": "failed", "stage": "plan", "error": why} for n in names]
    if fused.size != bundle.size:
        why = f"{fused_dir} takes {fused.size} images, the reference bundle {bundle.size}: export both alike"
        return [{"backend": n, "status": "failed", "stage": "plan", "error": why} for n in names]
    if not api.aot_plugins:
        why = f"the fused plugin needs TensorRT ≥ 10.9 (ahead-of-time plugins); TensorRT {api.version} is here"
        return [{"backend": n, "status": "skipped", "stage": "plan", "error": why} for n in names]
    return None


def check(bundle_dir: Path, images: Path, precisions: list[str], args,
          on_row: Optional[Callable[[dict], None]] = None, fused_dir: Optional[Path] = None,
          api=None) -> list[dict]:
    """The reference row, a row per precision of BUNDLE, then (with `fused_dir`) a row per precision of the
    fused-plugin bundle — built where `api` (this TensorRT) has ahead-of-time plugins."""

    start = time.monotonic()
    bundle = load_bundle(bundle_dir)
    if required_plugins(bundle.manifest):
        raise ValueError(f"{bundle_dir} is a fused-plugin bundle, which ONNX Runtime cannot run as the reference: "
                         "give the standard-op bundle of the same run as BUNDLE and this one as --fused")
    raw = _read_images(images, args.limit)
    frames = np.stack([prepare(img, bundle.size) for img in raw])
    ref_backend = OnnxRuntimeBackend(bundle.models["fp32"], name="onnx:fp32")
    ref_maps, ref_scores = _run_all(ref_backend, frames)
    ref = {"maps": ref_maps, "scores": ref_scores, "threshold": bundle.threshold_for("fp32").value}
    rows = [{"backend": ref_backend.name, "status": "reference", "providers": ",".join(ref_backend.providers),
             "threshold": ref["threshold"], "map_correlation": 1.0, "max_abs_map_err": 0.0, "score_spearman": 1.0,
             "verdict_agreement": 1.0,
             "e2e_ms": latency_ms(_end_to_end(ref_backend, raw, bundle.size, max(10, args.iterations // 10)))}]
    if on_row:
        on_row(rows[0])
    runs = [(bundle, "tensorrt", p) for p in precisions]
    told = fused_rows(fused_dir, bundle, api, precisions)
    if told is None:
        runs += [(load_bundle(fused_dir), "tensorrt-fused", p) for p in precisions]
    for which, prefix, precision in runs:
        if time.monotonic() - start > args.budget_min * 60:
            row = {"backend": f"{prefix}-{precision}", "status": "skipped", "stage": "budget",
                   "error": f"time budget of {args.budget_min} min spent; rerun with --precisions {precision}"}
        else:
            row = _one_precision(which, precision, frames, raw, ref, args, prefix)
        rows.append(row)
        if on_row:
            on_row(row)
    for row in told or []:
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def _ms(r: dict, key: str) -> str:
    m = r.get(key)
    return f"{m['p50']:.2f} / {m['p99']:.2f}" if m else "–"


def _num(r: dict, key: str, fmt: str) -> str:
    v = r.get(key)
    return format(v, fmt) if isinstance(v, (int, float)) else "–"


def print_table(rows: list[dict], header: dict) -> None:
    table = Table(title=" · ".join(f"{k} {v}" for k, v in header.items()))
    for col in ("backend", "path", "map corr", "max |Δmap|", "score ρ", "verdicts", "engine p50/p99 ms",
                "end-to-end p50/p99 ms", "note"):
        table.add_column(col)
    for r in rows:
        if r.get("status") in ("failed", "skipped"):
            note = f"{r['status']} ({r.get('stage')}): {r.get('error')}"
        elif r.get("status") == "reference":
            note = "reference (ONNX Runtime fp32)"
        else:
            note = "cached engine" if r.get("cached") else f"built in {r.get('build_s', 0):.0f} s"
        path = r.get("path") or ("ONNX Runtime" if r.get("status") == "reference" else "–")
        table.add_row(r["backend"], Text(path), _num(r, "map_correlation", ".5f"), _num(r, "max_abs_map_err", ".2e"),
                      _num(r, "score_spearman", ".4f"), _num(r, "verdict_agreement", ".1%"),
                      _ms(r, "engine_ms"), _ms(r, "e2e_ms"), Text(note))
    Console().print(table)


def write_json(path: Path, header: dict, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"header": header, "rows": rows}, indent=2, default=str) + "\n")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--images", type=Path, help="folder of real images (e.g. the test split); required")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--fused", type=Path, default=None,
                    help="the same run exported with --fused-graph-attention: built with the fused plugin where "
                         "TensorRT ≥ 10.9, compared with the same reference")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--limit", type=int, default=64, help="at most this many images for parity")
    ap.add_argument("--workspace-mb", type=int, default=None)
    ap.add_argument("--budget-min", type=float, default=14.0,
                    help="stop starting new precisions after this many minutes (the check stays < 15 min)")
    ap.add_argument("--json", type=Path, default=Path("trt_check.json"), help="default: ./trt_check.json")
    args = ap.parse_args(argv)


    try:
        target = current_target()
    except TensorRTMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TensorRTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.images is None or not args.images.is_dir():
        print("error: give --images DIR, a folder of real images (e.g. the category's test split): parity "
              "and latency are measured on real frames, never on random tensors", file=sys.stderr)
        return 1
    dev = target.device
    plugin = ("not asked (--fused FUSED)" if args.fused is None else
              "built (TensorRT ≥ 10.9)" if target.api.aot_plugins else "not available (TensorRT < 10.9)")
    header = {"GPU": dev.name, "sm": dev.sm, "SMs": dev.sm_count, "memory MiB": dev.memory_mib,
              "TensorRT": target.tensorrt_version, "fused plugin": plugin, "iterations": args.iterations,
              "warm-up": args.warmup, "batch": 1}
    rows: list[dict] = []
    code = 0
    try:
        check(args.bundle, args.images, [p for p in args.precisions.split(",") if p], args, rows.append,
              args.fused, target.api)
    except Exception as exc:  # the reference side failed: nothing to compare, but say so in both outputs
        rows.append(_failure("onnx:fp32", "reference", exc))
        code = 1
    finally:
        print_table(rows, header)
        write_json(args.json, header, rows)
        print(f"wrote {args.json}", file=sys.stderr)
    if any(r.get("status") == "failed" for r in rows):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
