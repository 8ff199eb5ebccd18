"""What the line-side page costs the frame loop: the same run with and without `--web` and a browser-like client.

Each round runs `slsg-edge run`'s own `execute` twice on the same video, alternating, without and with the page; in
the second a client follows the page as a browser does (server-sent events, and the newest picture fetched on every
update). Reported per case: the frame loop's p50 and p95 time per frame (all stages) and frames judged per second,
and the ratios with the page to without. The target is within 5 %.

    python -m benchmarks.page_overhead BUNDLE [--frames 300] [--rounds 3] [--threads 1] [--fps 20]
    python -m benchmarks.page_overhead --tiny     # a brightness model: the loop's own costs dominate there
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from benchmarks.edge_overhead import scene_video
from edge_runtime.runner import RunConfig, execute
from edge_runtime.sources.spec import SourceSpec
from edge_runtime.statistics import percentile
from edge_runtime.tests.support import make_bundle
from edge_runtime.web.server import WebConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client(threading.Thread):
    """Follows the page like a browser tab: the event stream, and the live picture after each update."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.base, self.updates, self.pictures, self.stop = f"http://127.0.0.1:{port}", 0, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.base + "/api/events", timeout=5) as stream:
                    for line in stream:
                        if self.stop.is_set():
                            return
                        if line.startswith(b"data: "):
                            self.updates += 1
                            with urllib.request.urlopen(self.base + "/api/live.jpg", timeout=5) as r:
                                r.read()
                                self.pictures += 1
            except OSError:
                time.sleep(0.05)  # the page is not up yet, or the run ended


def one_run(bundle: Path, video: Path, frames: int, threads: Optional[int], page: bool, work: Path,
            paced: bool = False) -> dict:
    port = free_port()
    cfg = RunConfig(bundle=bundle, source=SourceSpec(video=video, realtime=paced), log=work / f"events-{page}.jsonl",
                    backend="onnx", threads=threads, max_frames=frames, quiet=True,
                    web=WebConfig("127.0.0.1", port) if page else None)
    client = Client(port) if page else None
    if client:
        client.start()
    t0 = time.perf_counter()
    _, stats = execute(cfg, Console(file=io.StringIO()))
    wall = time.perf_counter() - t0
    if client:
        client.stop.set()
    totals = list(stats.latencies["total"])
    return {"p50_ms": percentile(totals, 50), "p95_ms": percentile(totals, 95), "fps": stats.judged / wall,
            "judged": stats.judged, "updates": client.updates if client else 0,
            "pictures": client.pictures if client else 0}


def measure(bundle: Path, frames: int, rounds: int, threads: Optional[int], fps: float = 0.0) -> dict:
    """`fps` 0: the video read flat out (the loop's throughput, the worst case for the page); else paced at that
    rate as a camera delivers it (the latency a line sees)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy = work / "model.slsg"  # the page keeps its store beside the bundle: not beside the user's
        shutil.copytree(bundle, copy)
        video = scene_video(work / "line.avi", frames, fps=fps or 30.0)
        one_run(copy, video, min(frames, 30), threads, False, work)  # warm caches (file system, ONNX Runtime)
        runs: dict[str, list[dict]] = {"without page": [], "with page and a client": []}
        for _ in range(rounds):
            runs["without page"].append(one_run(copy, video, frames, threads, False, work, fps > 0))
            runs["with page and a client"].append(one_run(copy, video, frames, threads, True, work, fps > 0))
    summary = {}
    for case, rs in runs.items():
        summary[case] = {k: percentile([r[k] for r in rs], 50) for k in ("p50_ms", "p95_ms", "fps")}
        summary[case]["updates"] = sum(r["updates"] for r in rs)
        summary[case]["pictures"] = sum(r["pictures"] for r in rs)
    a, b = summary["without page"], summary["with page and a client"]
    summary["ratio"] = {"p50": b["p50_ms"] / a["p50_ms"], "p95": b["p95_ms"] / a["p95_ms"], "fps": b["fps"] / a["fps"]}
    return {"rounds": runs, "summary": summary}


def tiny_bundle(work: Path) -> Path:
    return make_bundle(work / "tiny.slsg", size=256)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--tiny", action="store_true", help="a 256² brightness model instead of a bundle")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fps", type=float, default=0.0, help="pace the video like a camera (0: read it flat out)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if (args.bundle is None) == (not args.tiny):
        ap.error("give a BUNDLE or --tiny")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = tiny_bundle(Path(tmp)) if args.tiny else args.bundle
        result = measure(bundle, args.frames, args.rounds, args.threads, args.fps)
    s = result["summary"]
    pace = f"paced at {args.fps:g} fps" if args.fps else "read flat out"
    table = Table(title=f"The frame loop with and without the page ({args.frames} frames {pace} × {args.rounds} "
                        "rounds, medians of the rounds)")
    for col in ("case", "p50 ms/frame", "p95 ms/frame", "frames/s", "page updates", "pictures sent"):
        table.add_column(col)
    for case in ("without page", "with page and a client"):
        c = s[case]
        table.add_row(case, f"{c['p50_ms']:.2f}", f"{c['p95_ms']:.2f}", f"{c['fps']:.1f}", str(c["updates"]),
                      str(c["pictures"]))
    r = s["ratio"]
    table.add_row("with / without", f"{r['p50']:.3f}×", f"{r['p95']:.3f}×", f"{r['fps']:.3f}×", "", "")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
