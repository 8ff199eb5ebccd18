"""What the runtime costs besides inference, and end-to-end FPS, with ONNX Runtime on a bundle (no torch).

Frames come from a synthetic 640×480 video read by a capture thread (the camera path); each is prepared
to the bundle size, inferred, scored and logged to a JSONL file (the NG overlay is made by the NG saver's
thread, off the frame loop, since issue 17). The consumer's time is
split into hand-off (waiting for the next frame), pre-process, inference, post-process and logging; the
target is that everything but inference costs ≤ 10 % of inference.

    python benchmarks/edge_overhead.py BUNDLE [--frames 300] [--threads N] [--backend onnx]
    python benchmarks/edge_overhead.py --tiny     # a 256×256 brightness model; overhead dominates there
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import Judge
from edge_runtime.sinks.eventlog import EventLog
from edge_runtime.sources.files import video_file_items
from edge_runtime.sources.items import Frame
from edge_runtime.sources.stream import FrameStream
from edge_runtime.statistics import percentile
from edge_runtime.tests.support import make_bundle

PARTS = ("handoff", "preprocess", "inference", "postprocess", "logging")


def scene_video(path: Path, n: int, size: tuple[int, int] = (480, 640), fps: float = 30.0) -> Path:
    """A moving bright part on a textured belt: real decoded frames, not random tensors."""
    h, w = size
    rng = np.random.default_rng(0)
    belt = cv2.GaussianBlur(rng.integers(40, 90, (h, w), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for i in range(n):
        frame = cv2.cvtColor(belt, cv2.COLOR_GRAY2BGR)
        x = int((i * 7) % (w - 160))
        cv2.rectangle(frame, (x, h // 3), (x + 160, h // 3 + 140), (200, 210, 220), -1)
        if i % 10 == 0:
            cv2.circle(frame, (x + 80, h // 3 + 70), 25, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def measure(
    bundle_dir: Path, frames: int, warmup: int, threads: int | None, backend: str, work: Path
) -> dict:
    bundle = load_bundle(bundle_dir)
    be = select_backend(bundle, backend, threads)
    judge = Judge(be, bundle.threshold.value)
    video = scene_video(work / "scene.avi", 120)
    stream = FrameStream("scene", lambda stop: video_file_items(video, True, False, stop), threaded=True)
    log = EventLog(work / "events.jsonl")
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    items = iter(stream)
    n, t_start = 0, 0.0
    while n < warmup + frames:
        t0 = time.perf_counter()
        item = next(items)
        t1 = time.perf_counter()
        if not isinstance(item, Frame):
            continue
        j = judge.judge(item)
        t2 = time.perf_counter()
        log.on_frame(j)
        t3 = time.perf_counter()
        if n == warmup:
            t_start = t0
        if n >= warmup:
            for k in ("preprocess", "inference", "postprocess"):
                parts[k].append(j.timings_ms[k])
            parts["handoff"].append((t1 - t0) * 1e3)
            parts["logging"].append((t3 - t2) * 1e3)
        n += 1
    wall = time.perf_counter() - t_start
    stream.stop()
    stream.close()
    log.close()
    mean = {k: float(np.mean(v)) for k, v in parts.items()}
    overhead = sum(v for k, v in mean.items() if k != "inference")
    return {
        "bundle": str(bundle_dir),
        "backend": be.name,
        "providers": list(be.providers),
        "size": list(judge.size),
        "frames": frames,
        "warmup": warmup,
        "threads": threads,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "ms": {
            k: {"mean": mean[k], "p50": percentile(v, 50), "p99": percentile(v, 99)}
            for k, v in parts.items()
        },
        "overhead_ms": overhead,
        "overhead_ratio": overhead / mean["inference"],
        "fps_end_to_end": frames / wall,
    }


def print_table(r: dict) -> None:
    inf = r["ms"]["inference"]["mean"]
    print(
        f"backend {r['backend']} {r['providers']}  input {r['size'][0]}×{r['size'][1]}  "
        f"frames {r['frames']} (+{r['warmup']} warm-up)"
    )
    print(f"{'part':<12}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'% of inference':>16}")
    for k in PARTS:
        m = r["ms"][k]
        print(f"{k:<12}{m['mean']:>10.3f}{m['p50']:>10.3f}{m['p99']:>10.3f}{100 * m['mean'] / inf:>15.1f}%")
    verdict = "meets" if r["overhead_ratio"] <= 0.10 else "misses"
    print(
        f"overhead (all but inference) {r['overhead_ms']:.3f} ms = {100 * r['overhead_ratio']:.1f} % "
        f"of inference: {verdict} the ≤ 10 % target"
    )
    print(f"end-to-end FPS {r['fps_end_to_end']:.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", type=Path)
    ap.add_argument(
        "--tiny", action="store_true", help="build a 256×256 brightness-model bundle (needs onnx)"
    )
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backend", default="onnx")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if (args.bundle is None) == (not args.tiny):
        ap.error("give a BUNDLE or --tiny")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = args.bundle
        if args.tiny:
            bundle = make_bundle(work / "tiny.slsg", size=256)
        r = measure(bundle, args.frames, args.warmup, args.threads, args.backend, work)
    print_table(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
