"""`slsg pretrain`: generative pre-training of the encoder (masked-patch inpainting + patch positions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from slsg.commands._common import console, err_console, user_errors
from slsg.pretraining import PretrainConfig, encoder_file, pretrain
from slsg.pretraining.loop import PretrainResumeError
from slsg.pretraining.state import INFO_FILE, PREVIEW_FILE


def command(
    data: Path = typer.Argument(..., help="dataset root (with --category) or a category folder holding train/"),
    out: Path = typer.Option(..., "-o", "--out", help="ENCODER folder: encoder.safetensors, pretrain.json, state"),
    category: Optional[str] = typer.Option(None, help="category folder under DATA"),
    backbone: str = typer.Option("resnet18", help="resnet18 | efficientnet_lite0 (use the one you will train)"),
    size: int = typer.Option(256, help="input size, a multiple of 32 (use the one you will train)"),
    init: str = typer.Option("imagenet", help="imagenet | random | a trunk weights file"),
    steps: int = typer.Option(2000, help="optimiser steps"),
    batch: int = typer.Option(8, help="images per step"),
    lr: float = typer.Option(1e-3, help="AdamW peak learning rate of the decoder and position head"),
    encoder_lr_scale: Optional[float] = typer.Option(
        None, help="encoder lr = lr × this; default 1.0 from random, 0.1 from ImageNet/file"),
    grid: int = typer.Option(8, help="cells per side of the masking/shuffling lattice"),
    mask_ratio: float = typer.Option(0.3, help="share of cells hidden and inpainted"),
    shuffle_ratio: float = typer.Option(0.3, help="share of visible cells moved; their origin is predicted"),
    w_position: float = typer.Option(0.5, help="weight of the position loss (L1 and SSIM weigh 1)"),
    seed: int = typer.Option(0, help="same as `slsg train --seed`, so the same validation images stay unseen"),
    checkpoint_every: int = typer.Option(250, help="steps between resumable states"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    preview: bool = typer.Option(False, help="write ENCODER/preview.png: masked inputs, inpaintings, originals"),
    resume: bool = typer.Option(False, help="continue an interrupted pre-training in ENCODER"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Pre-train the encoder on good images; then `slsg train --encoder-weights ENCODER/encoder.safetensors`."""
    with user_errors():
        if out.suffix == ".safetensors":
            raise ValueError(f"-o {out}: ENCODER is a folder (it also holds the config, log and resumable state); "
                             f"give e.g. -o {out.with_suffix('')}")
        cfg = PretrainConfig(backbone=backbone, size=size, init=str(init), steps=steps, batch=batch, lr=lr,
                             encoder_lr_scale=encoder_lr_scale, grid=grid, mask_ratio=mask_ratio,
                             shuffle_ratio=shuffle_ratio, w_position=w_position, seed=seed,
                             checkpoint_every=checkpoint_every, device=device)
        try:
            pretrain(data, out, cfg, category=category, resume=resume, progress=not quiet, preview=preview)
        except PretrainResumeError as exc:
            raise ValueError(str(exc)) from None
        except KeyboardInterrupt:
            err_console.print(f"interrupted: state saved in {out}; continue with the same command and --resume")
            raise typer.Exit(130) from None
        _print_summary(out, encoder_file(out), backbone, size, preview)


def _print_summary(out: Path, weights: Path, backbone: str, size: int, preview: bool) -> None:


    losses = json.loads((out / INFO_FILE).read_text()).get("losses", {})
    first, last = losses.get("first", {}), losses.get("last", {})
    if first and last:
        console.print(f"pretext loss {first['loss']:.4f} → {last['loss']:.4f} (L1 {first['l1']:.4f} → "
                      f"{last['l1']:.4f}, position {first['position']:.3f} → {last['position']:.3f})")
    console.print(f"encoder → [bold]{weights}[/]")
    if preview:
        console.print(f"preview → {out / PREVIEW_FILE}")
    console.print(f"next: slsg train DATA -o RUN --backbone {backbone} --size {size} --encoder-weights {weights}")
