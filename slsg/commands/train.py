"""`slsg train`: the reference recipe by default, every knob overridable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from edge_runtime.preprocess import parse_size
from edge_runtime.scoring import threshold_warning
from slsg.checkpoint import CONFIG_FILE, WEIGHTS_FILE, open_run
from slsg.commands._common import console, err_console, user_errors
from slsg.data.foreground import ProductProfile
from slsg.heads.global_context import GlobalHeadConfig, read_head_meta
from slsg.model import ModelConfig
from slsg.training import TrainConfig, train
from slsg.training.loop import ResumeError


def command(
    data: Path = typer.Argument(..., help="dataset root (with --category) or a category folder holding train/"),
    out: Path = typer.Option(..., "-o", "--out", help="RUN folder (checkpoint, config, threshold, logs)"),
    category: Optional[str] = typer.Option(None, help="category folder under DATA"),
    backbone: str = typer.Option("resnet18", help="resnet18 | efficientnet_lite0"),
    size: str = typer.Option("256", help="input size: N or HxW (height x width, e.g. 512x256), multiples of 32"),
    steps: int = typer.Option(7001, help="optimiser steps (reference: 7001)"),
    batch: int = typer.Option(4, help="good images per step; as many synthetic anomalies are added"),
    lr: float = typer.Option(0.04, help="peak learning rate of the cosine schedule"),
    seed: int = typer.Option(0),
    workers: int = typer.Option(0, help="DataLoader workers (results do not depend on it)"),
    encoder_weights: str = typer.Option("imagenet", help="imagenet | random | a file (e.g. from `slsg pretrain`)"),
    texture_dir: Optional[Path] = typer.Option(None, help="texture images (e.g. DTD); built-in textures if absent"),
    false_reject_rate: float = typer.Option(0.01, help="threshold: share of good validation images flagged NG"),
    checkpoint_every: int = typer.Option(250, help="steps between resumable checkpoints"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    encoder_bn: Optional[str] = typer.Option(None, help="train (reference) | eval: freeze encoder BatchNorm"),
    graph_kernel: str = typer.Option("reference", help="reference | fused (Triton kernels on CUDA)"),
    fix_reference_bugs: bool = typer.Option(False, help="fix the reference's breakfast_box blending bug"),
    head: str = typer.Option("all", help="heads of the decision score: all (slsg+global+local) | both (slsg+global) "
                             "| slsg (SLSG alone, the reference) | any heads joined by commas, e.g. slsg,local"),
    synthesis: str = typer.Option("auto", help="auto: anomalies on the object, turned poses where the good images "
                                  "show a part that turns | reference: the reference's recipe"),
    global_grid: str = typer.Option("auto", help="the global head also pools each cell of a grid: auto (4×4 where "
                                    "the good images show a surface, none on an object) | N (N×N of f4; 0: none)"),
    resume: bool = typer.Option(False, help="continue an interrupted run in OUT"),
    force: bool = typer.Option(False, help="overwrite OUT even when it holds a RUN `slsg train` did not make"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train SLSG on good images; the final checkpoint is the result and validation sets the threshold."""
    with user_errors():
        refuse_foreign_run(out, force)

        model_cfg = ModelConfig(backbone=backbone, size=parse_size(size), encoder_bn=encoder_bn,
                                graph_kernel=graph_kernel)
        cfg = TrainConfig(steps=steps, batch=batch, lr=lr, seed=seed, workers=workers,
                          encoder_weights=str(encoder_weights), texture_dir=str(texture_dir) if texture_dir else None,
                          false_reject_rate=false_reject_rate, checkpoint_every=checkpoint_every, device=device,
                          fix_reference_bugs=fix_reference_bugs, head=head, synthesis=synthesis,
                          global_grid=global_grid)
        try:
            train(data, out, model_cfg, cfg, category=category, resume=resume, progress=not quiet,
                  say=lambda line: err_console.print(f"[yellow]warning:[/] {line}", markup=True, highlight=False))
        except ResumeError as exc:
            raise ValueError(str(exc)) from None
        except KeyboardInterrupt:
            err_console.print(f"interrupted: state saved in {out}; continue with the same command and --resume")
            raise typer.Exit(130) from None
        if os.environ.get("RANK", "0") == "0":
            _print_summary(out)


def refuse_foreign_run(out: Path, force: bool) -> None:
    """A RUN that training did not make (imported official weights, another tool's checkpoint) is not
    overwritten by a fresh network unless --force: its weights may exist nowhere else."""


    config_path, weights = out / CONFIG_FILE, out / WEIGHTS_FILE
    if force or not (config_path.is_file() or weights.is_file()):
        return
    try:
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    except (OSError, ValueError):
        config = {}
    if "train" in config or (out / "train_state.json").is_file():
        return  # made by `slsg train`: retraining (or --resume) into it is the user's call
    origin = config.get("source", {}).get("official") if isinstance(config.get("source"), dict) else None
    what = f"imported from {origin}" if origin else "not made by `slsg train`"
    raise ValueError(f"{out} holds a RUN {what}: training would replace its weights with a new network. To set "
                     f"its threshold use `slsg threshold {out} DATA`; to train anyway, choose another -o or pass "
                     "--force")


def _print_summary(out: Path) -> None:
    run = open_run(out)
    t = run.threshold
    if t is None:
        console.print(f"trained → {out} (no validation images: no threshold set)")
        return
    console.print(f"trained → [bold]{out}[/]; threshold {t.value:.4f} on the decision score "
                  f"({run.config.get('head', 'slsg')}) for a {t.false_reject_rate:.1%} false-reject rate on "
                  f"{t.n_good} good images ({run.config['threshold'].get('source', 'validation')})")
    skipped = run.config.get("data", {}).get("skipped", [])
    if skipped:
        err_console.print(f"[yellow]warning:[/] {len(skipped)} file(s) were left out of training (config.json "
                          f"`data.skipped`): " + ", ".join(s["path"] for s in skipped[:5]) +
                          (" …" if len(skipped) > 5 else ""))
    product = run.config.get("product")
    if product:
        console.print(f"the good images show {ProductProfile(**product).describe()}")
    fit, meta = run.config.get("global_head"), read_head_meta(out)
    if fit and meta:
        pooled = GlobalHeadConfig.from_dict(meta["config"]).describe()
        console.print(f"global head: Gaussian of {fit['dims']} features pooled over {pooled}, on {fit['n_images']} "
                      f"good images, {fit['estimator']} shrinkage {fit['shrinkage']:.3f}, {fit['seconds']:.1f} s")

    warning = threshold_warning(t)
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}")
