"""Does our generative pre-training help SLSG? The (a)–(d) comparison at one fixed budget.

    (a) ImageNet weights            (b) random initialisation
    (c) random + our pre-training   (d) ImageNet + our pre-training
    (r), (s) controls: random / ImageNet + only the BatchNorm re-estimation that ends pre-training (0 steps)

Every variant gets the same SLSG training (steps, batch, seed, size); (c) and (d) additionally spend
`--pretrain-steps` on the pretext. Image AUROCs on the category's test set (LOCO: logical and structural).

    python benchmarks/pretraining.py DATA [--category C] [--backbone efficientnet_lite0] [--size 128]
        [--pretrain-steps 150] [--train-steps 150] [--work DIR] [--report benchmarks/results/pretraining_NAME]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from slsg.checkpoint import open_run
from slsg.evaluation import evaluate_category
from slsg.inference import TorchPredictor
from slsg.model import ModelConfig
from slsg.pretraining import ENCODER_FILE, PretrainConfig, pretrain
from slsg.training import TrainConfig, train
from slsg.training.data import load_training_data

# key → (name, encoder weights without pre-training, pre-train from, pretext steps: None = the budget's).
# "r" and "s" are controls: 0 pretext steps, so only the BatchNorm re-estimation on clean images that ends
# pre-training; they separate what the pretexts learn from what mere statistics fix.
VARIANTS = {
    "a": ("ImageNet", "imagenet", None, None),
    "b": ("random init", "random", None, None),
    "c": ("random + pre-training", None, "random", None),
    "d": ("ImageNet + pre-training", None, "imagenet", None),
    "r": ("random + BatchNorm re-estimation only (control)", None, "random", 0),
    "s": ("ImageNet + BatchNorm re-estimation only (control)", None, "imagenet", 0),
}
METRICS = ("logical", "structural", "overall", "mean_ls", "pixel_auroc")


@dataclass
class Budget:
    backbone: str
    size: int
    pretrain_steps: int
    pretrain_batch: int
    train_steps: int
    train_batch: int
    seed: int
    device: str


def run_variant(key: str, data: Path, category: str | None, budget: Budget, work: Path, prepared,
                encoders: dict[str, Path], pixel: bool) -> dict:
    """Pre-train if the variant asks (cached per initialisation), train SLSG, evaluate; returns metrics + timings."""
    name, weights, pretrain_from, steps = VARIANTS[key]
    timings: dict[str, float] = {}
    pretext: dict = {}
    if pretrain_from is not None:
        steps = budget.pretrain_steps if steps is None else steps
        enc_dir = work / f"encoder_{pretrain_from}_{steps}"
        if enc_dir.name not in encoders:
            t = time.perf_counter()
            cfg = PretrainConfig(backbone=budget.backbone, size=budget.size, init=pretrain_from, steps=steps,
                                 batch=budget.pretrain_batch, seed=budget.seed, checkpoint_every=0,
                                 device=budget.device)
            pretrain(data, enc_dir, cfg, category=category, progress=False, prepared=prepared)
            timings["pretrain_s"] = round(time.perf_counter() - t, 1)
            encoders[enc_dir.name] = enc_dir / ENCODER_FILE
        pretext = json.loads((enc_dir / "pretrain.json").read_text()).get("losses", {})
        weights = str(encoders[enc_dir.name])
    t = time.perf_counter()
    run = train(data, work / f"run_{key}", ModelConfig(backbone=budget.backbone, size=budget.size),
                TrainConfig(steps=budget.train_steps, batch=budget.train_batch, seed=budget.seed,
                            encoder_weights=weights, checkpoint_every=0, device=budget.device),
                category=category, progress=False, prepared=prepared)
    timings["train_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    device = "cuda" if budget.device != "cpu" and torch.cuda.is_available() else "cpu"
    model = open_run(run).load_model(device)
    result = evaluate_category(TorchPredictor(model, device), prepared.category, (budget.size, budget.size),
                               progress=False, pixel=pixel)
    timings["evaluate_s"] = round(time.perf_counter() - t, 1)
    metrics = result.metrics()
    return {"variant": key, "name": name, "encoder_weights": weights if pretrain_from is None else
            f"pretrained from {pretrain_from}, {steps} steps", "metrics": {m: metrics.get(m) for m in METRICS},
            "pretext_losses": pretext, "timings": timings}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def markdown_table(rows: list[dict], title: str, budget: Budget, command: str) -> str:
    cols = [m for m in METRICS if any(r["metrics"].get(m) is not None for r in rows)]
    lines = [f"### {title}", "", f"Budget: {budget.backbone} at {budget.size}×{budget.size}, pre-training "
             f"{budget.pretrain_steps} steps × batch {budget.pretrain_batch}, SLSG training {budget.train_steps} "
             f"steps × batch {budget.train_batch}+{budget.train_batch}, seed {budget.seed}, device {budget.device}.",
             "", f"Command: `{command}`", "",
             "| variant | " + " | ".join(f"{c} AUROC" if c != "pixel_auroc" else "pixel AUROC" for c in cols)
             + " | pretext loss first → last | minutes |",
             "|---|" + "---:|" * (len(cols) + 2)]
    for r in rows:
        p = r["pretext_losses"]
        pretext = f"{p['first']['loss']:.3f} → {p['last']['loss']:.3f}" if p.get("first") else "–"
        minutes = sum(r["timings"].values()) / 60
        lines.append(f"| ({r['variant']}) {r['name']} | " + " | ".join(_fmt(r["metrics"][c]) for c in cols)
                     + f" | {pretext} | {minutes:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path)
    p.add_argument("--category")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--pretrain-steps", type=int, default=150)
    p.add_argument("--pretrain-batch", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", default="abcd", help="which of a, b, c, d (and the controls r, s) to run")
    p.add_argument("--pixel", action="store_true", help="also pixel AUROC (slower)")
    p.add_argument("--work", type=Path, default=Path("/tmp/slsg_pretraining_bench"))
    p.add_argument("--report", type=Path, help="write REPORT.md and REPORT.json (default: WORK/report.*)")
    args = p.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from a, b, c, d, r, s")
    budget = Budget(args.backbone, args.size, args.pretrain_steps, args.pretrain_batch, args.train_steps,
                    args.train_batch, args.seed, args.device)
    prepared = load_training_data(args.data, args.category, args.size, TrainConfig.val_fraction, args.seed)
    title = f"{prepared.category.name} ({prepared.category.layout}, {len(prepared.train_images)} training images)"
    command = "python benchmarks/pretraining.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows, encoders = [], {}
    for key in args.variants:
        row = run_variant(key, args.data, args.category, budget, args.work, prepared, encoders, args.pixel)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("variant", "metrics", "timings")}), flush=True)
    report = args.report or args.work / "report"
    report.parent.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, title, budget, command)
    report.with_suffix(".md").write_text(table)
    report.with_suffix(".json").write_text(json.dumps(
        {"dataset": title, "budget": budget.__dict__, "command": command, "rows": rows,
         "machine": {"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads()}}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
