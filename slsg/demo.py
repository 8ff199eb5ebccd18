"""The main job on its embedded default: synth → train → evaluate → predict → export --int8 → edge run on a video.

Every stage is the same function the CLI commands use; the edge runtime runs as its own process (`slsg-edge`),
so the demo also proves that the deployed side needs no torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table

from edge_runtime.bundle import load_bundle
from edge_runtime.statistics import percentile
from slsg.data import open_dataset, read_image
from slsg.data.synthetic_scene import write_dataset
from slsg.evaluation import evaluate_category
from slsg.model import ModelConfig
from slsg.predictors import load_predictor
from slsg.reports import head_table, render_table, score_histogram_png
from slsg.training import TrainConfig, train
from slsg.training.state import has_state


@dataclass
class DemoConfig:
    out: Path = Path("slsg-demo")
    backbone: str = "efficientnet_lite0"
    size: int = 128  # the synthetic parts are large: 128² keeps a 2-core CPU run within minutes
    steps: int = 600  # 2-core AVX2 CPU: train 5.3 min; with the venv made, the job fits 10 minutes
    batch: int = 4
    seed: int = 0
    frames_per_image: int = 3
    calib_size: int = 64


def write_line_video(images: list[Path], path: Path, size: int, frames_per_image: int, fps: float = 10.0) -> int:
    """A lossless (FFV1) "camera" video: each test image held for a few frames, as a part passing the camera."""

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (size, size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write FFV1 video to {path}")
    n = 0
    for p in images:
        frame = cv2.resize(read_image(p), (size, size), interpolation=cv2.INTER_AREA)
        for _ in range(frames_per_image):
            writer.write(frame)
            n += 1
    writer.release()
    return n


def _stage(console, name: str):
    console.rule(f"[bold]{name}")
    return time.perf_counter()


def run_demo(cfg: DemoConfig, console) -> dict:
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = _stage(console, "1/6 synthetic LOCO-like dataset")
    data = out / "data" / "synthetic_box"
    if not (data / "defects_config.json").is_file():
        data = write_dataset(out / "data", seed=cfg.seed)
    category = open_dataset(data)[0]
    console.print(f"{data}: {len(category.train)} train, {len(category.validation)} validation, "
                  f"{len(category.test)} test images")
    timings["synth"] = time.perf_counter() - t

    t = _stage(console, f"2/6 train SLSG ({cfg.backbone}, {cfg.steps} steps, ImageNet encoder)")
    run = out / "run"
    model_cfg = ModelConfig(backbone=cfg.backbone, size=cfg.size)
    train_cfg = TrainConfig(steps=cfg.steps, batch=cfg.batch, seed=cfg.seed, checkpoint_every=100)

    done = (run / "model.safetensors").is_file()
    if not done:
        train(data, run, model_cfg, train_cfg, resume=has_state(run))
    timings["train"] = time.perf_counter() - t

    t = _stage(console, "3/6 evaluate on the test split")
    loaded = load_predictor(run, "torch")
    result = evaluate_category(loaded.predict, category, loaded.size)
    console.print(render_table([result], title="The detector (decision score), synthetic LOCO-like set, PyTorch"))
    console.print(head_table(result, "Image AUROC: SLSG alone, the global head alone, and the fused decision score"))
    score_histogram_png(result, loaded.threshold.value, out / "scores.png")
    timings["evaluate"] = time.perf_counter() - t

    t = _stage(console, "4/6 predict a few test images (heatmap overlays)")
    picks = [s.path for kind in ("good", "logical", "structural")
             for s in [s for s in category.test if s.kind == kind][:2]]
    _cli([sys.executable, "-m", "slsg", "predict", str(run), *map(str, picks), "-o", str(out / "predictions")])
    timings["predict"] = time.perf_counter() - t

    t = _stage(console, "5/6 export the bundle with INT8 (calibrated on good training images)")
    bundle = out / "model.slsg"
    export = [sys.executable, "-m", "slsg", "export", str(run), "-o", str(bundle), "--force"]
    code = _cli([*export, "--int8", "--calib-size", str(cfg.calib_size)], check=False)
    if code not in (0, 3):  # 3: a file was left out (gate or TensorRT lint); the bundle is usable
        _cli(export)
    int8 = sorted(p for p in load_bundle(bundle).models if p.startswith("int8"))
    if not int8:
        console.print("[yellow]INT8 was left out of the bundle (see why above); it keeps FP32")
    timings["export"] = time.perf_counter() - t

    t = _stage(console, "6/6 slsg-edge run on a simulated camera (the line video)")
    order = np.random.default_rng(cfg.seed).permutation(len(category.test))  # good and bad parts interleaved
    ordered = [category.test[i] for i in order]
    video = out / "line.mkv"
    n = write_line_video([s.path for s in ordered], video, cfg.size, cfg.frames_per_image)
    console.print(f"{video}: {n} frames, {cfg.frames_per_image} per test image (lossless FFV1)")
    log = out / "events.jsonl"
    log.unlink(missing_ok=True)
    _cli([sys.executable, "-m", "edge_runtime", "run", "--bundle", str(bundle), "--video", str(video),
          "--log", str(log), "--save-ng", str(out / "ng"), "--quiet"])
    timings["edge"] = time.perf_counter() - t
    line = line_verdicts(log, [s.kind != "good" for s in ordered], cfg.frames_per_image)
    heads = {h: {"logical": a.logical, "structural": a.structural} for h, a in result.heads.items()}
    return {"frames": n, "timings": timings, "line": line, "metrics": result.metrics(), "heads": heads,
            "threshold": loaded.threshold.value, "bundle": str(bundle), "int8": int8}


def _cli(cmd: list[str], check: bool = True) -> int:
    done = subprocess.run(cmd)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed with exit code {done.returncode}")
    return done.returncode


def line_verdicts(log: Path, anomalous: list[bool], frames_per_image: int) -> dict:
    """Compare the runtime's per-frame verdicts with the ground truth of the image each frame shows."""

    counts = {"frames": 0, "dropped": 0, "OK": 0, "NG": 0, "caught": 0, "missed": 0, "false_alarms": 0}
    latencies = []
    for line in log.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "dropped":
            counts["dropped"] += 1
        if ev.get("event") != "frame":
            continue
        counts["frames"] += 1
        counts[ev["verdict"]] += 1
        latencies.append(ev["latency_ms"]["total"])
        truth = anomalous[min(int(ev["id"]) // frames_per_image, len(anomalous) - 1)]
        ng = ev["verdict"] == "NG"
        counts["caught"] += truth and ng
        counts["missed"] += truth and not ng
        counts["false_alarms"] += (not truth) and ng
    counts["p50_ms"] = percentile(latencies, 50) if latencies else None
    return counts


def summary_table(report: dict):
    m, line, t = report["metrics"], report["line"], report["timings"]
    table = Table(title="slsg main job — results", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")

    def pct(v):
        return "–" if v is None else f"{v:.3f}"

    for head, a in report.get("heads", {}).items():
        table.add_row(f"{head} head alone: AUROC logical / structural", f"{pct(a['logical'])} / {pct(a['structural'])}")
    table.add_row("detector (decision score): logical / structural",
                  f"{pct(m.get('logical'))} / {pct(m.get('structural'))}")
    table.add_row("image AUROC ½(L+S) / all test images", f"{pct(m.get('mean_ls'))} / {pct(m.get('overall'))}")
    table.add_row("threshold (1 % false rejects on validation)", f"{report['threshold']:.4f}")
    table.add_row("edge frames judged / dropped", f"{line['frames']} / {line['dropped']}")
    table.add_row("edge OK / NG", f"{line['OK']} / {line['NG']}")
    table.add_row("defect frames caught / missed", f"{line['caught']} / {line['missed']}")
    table.add_row("false alarms on good frames", str(line["false_alarms"]))
    if line.get("p50_ms") is not None:
        table.add_row("edge latency p50 (all stages)", f"{line['p50_ms']:.1f} ms")
    table.add_row("stage times (s)", " · ".join(f"{k} {v:.0f}" for k, v in t.items()))
    kept = ", ".join(report["int8"])
    table.add_row("bundle", f"{report['bundle']} ({'INT8 gated and kept: ' + kept if kept else 'FP32 only'})")
    return table
