"""TensorRT check for a Jetson or a dGPU: build every precision, compare each engine with ONNX Runtime
(fp32) on real images, time engine-only and end-to-end latency, print one table. No torch.

    benchmarks/trt_check.sh BUNDLE --images DIR [--precisions fp32,fp16,int8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _read_images(folder: Path, limit: int) -> list[np.ndarray]:
    import cv2

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    images = [img for img in (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths) if img is not None]
    if not images:
        raise SystemExit(f"error: no readable images under {folder} (png/jpg/bmp/tif); "
                         "latency and parity are measured on real frames, never on random tensors")
    return images


def _run_all(backend, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps, scores = zip(*(backend.run(f[None]) for f in frames))
    return np.concatenate(maps), np.concatenate(scores)


def _end_to_end(backend, raw: list[np.ndarray], size: tuple[int, int], iterations: int) -> list[float]:
    from edge_runtime.preprocess import prepare

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


def check(bundle_dir: Path, images: Path, precisions: list[str], iterations: int, warmup: int,
          limit: int, workspace_mb: int | None) -> list[dict]:
    from edge_runtime.backends import OnnxRuntimeBackend
    from edge_runtime.bundle import load_bundle
    from edge_runtime.preprocess import prepare
    from edge_runtime.tensorrt import BuildSettings, PrecisionError, TensorRTBackend, build_engine
    from edge_runtime.tensorrt.parity import latency_ms, max_abs_error, spearman

    bundle = load_bundle(bundle_dir)
    raw = _read_images(images, limit)
    frames = np.stack([prepare(img, bundle.size) for img in raw])
    ref = OnnxRuntimeBackend(bundle.models["fp32"], name="onnx:fp32")
    ref_maps, ref_scores = _run_all(ref, frames)
    ref_e2e = latency_ms(_end_to_end(ref, raw, bundle.size, max(10, iterations // 10)))
    rows = [{"backend": ref.name, "providers": ",".join(ref.providers), "max_abs_map_err": 0.0,
             "spearman": 1.0, "e2e_ms": ref_e2e}]
    for precision in precisions:
        try:
            built = build_engine(bundle, BuildSettings(precision=precision, workspace_mb=workspace_mb))
        except PrecisionError as exc:
            rows.append({"backend": f"tensorrt-{precision}", "skipped": str(exc)})
            continue
        with TensorRTBackend(built.engine_path) as trt:
            maps, scores = _run_all(trt, frames)
            _end_to_end(trt, raw, bundle.size, warmup)
            rows.append({"backend": trt.name, "engine": built.engine_path.name, "cached": built.cached,
                         "build_s": built.seconds, "max_abs_map_err": max_abs_error(maps, ref_maps),
                         "spearman": spearman(scores, ref_scores),
                         "engine_ms": latency_ms(_engine_only(trt, frames, iterations)),
                         "e2e_ms": latency_ms(_end_to_end(trt, raw, bundle.size, iterations))})
    return rows


def print_table(rows: list[dict], header: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=" · ".join(f"{k} {v}" for k, v in header.items()))
    for col in ("backend", "max |Δmap|", "Spearman", "engine p50/p99 ms", "end-to-end p50/p99 ms", "note"):
        table.add_column(col)
    for r in rows:
        if "skipped" in r:
            table.add_row(r["backend"], "", "", "", "", r["skipped"])
            continue
        eng = r.get("engine_ms")
        table.add_row(r["backend"], f"{r['max_abs_map_err']:.2e}", f"{r['spearman']:.4f}",
                      f"{eng['p50']:.2f} / {eng['p99']:.2f}" if eng else "–",
                      f"{r['e2e_ms']['p50']:.2f} / {r['e2e_ms']['p99']:.2f}",
                      ("cached engine" if r.get("cached") else f"built in {r['build_s']:.0f} s")
                      if "engine" in r else "reference (ONNX Runtime fp32)")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--images", type=Path, help="folder of real images (e.g. the test split); required")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--limit", type=int, default=64, help="at most this many images for parity")
    ap.add_argument("--workspace-mb", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from edge_runtime.tensorrt import TensorRTError, TensorRTMissing, load_tensorrt, query_device

    try:
        trt = load_tensorrt()
        device = query_device()
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
    header = {"GPU": device.name, "sm": device.sm, "TensorRT": trt.__version__, "iterations": args.iterations,
              "warm-up": args.warmup, "batch": 1}
    try:
        rows = check(args.bundle, args.images, [p for p in args.precisions.split(",") if p], args.iterations,
                     args.warmup, args.limit, args.workspace_mb)
    except TensorRTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_table(rows, header)
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
