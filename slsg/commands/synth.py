"""`slsg synth OUT`: a LOCO-like synthetic dataset (category `synthetic_box`) in the official LOCO layout."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer
from rich.console import Console

from slsg.data.contact_sheet import write_contact_sheet
from slsg.data.layouts import open_dataset
from slsg.data.summary import print_summary
from slsg.data.synthetic_scene import CATEGORY, SMALL, SynthCounts, write_dataset


def command(
    out: Path = typer.Argument(..., help="Folder to write; the category lands in OUT/synthetic_box."),
    seed: int = typer.Option(0, "--seed", help="Same seed → byte-identical files."),
    small: bool = typer.Option(False, "--small", help="A tiny set (24 train, 8 validation, 8+8+8 test)."),
    size: int = typer.Option(256, "--size", help="Image side in pixels (a multiple of 32)."),
    preview: bool = typer.Option(False, "--preview", help="Also write OUT/synthetic_box_preview.png."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing OUT/synthetic_box."),
) -> None:
    """Write a LOCO-like synthetic dataset: a tray of items with logical and structural anomalies."""


    console = Console()
    if size % 32 or size < 64:
        console.print(f"[red]error:[/] --size {size} must be a multiple of 32, at least 64.")
        raise typer.Exit(2)
    target = out / CATEGORY
    if target.exists() and any(target.iterdir()) and not force:
        console.print(f"[red]error:[/] {target} already exists. Pick another OUT or pass --force.")
        raise typer.Exit(2)
    if target.exists() and force:
        shutil.rmtree(target)
    start = time.perf_counter()
    try:
        root = write_dataset(out, seed=seed, counts=SMALL if small else SynthCounts(), size=size)
    except OSError as e:
        console.print(f"[red]error:[/] cannot write {target}: {e}")
        raise typer.Exit(1) from e
    seconds = time.perf_counter() - start
    categories = open_dataset(root)
    print_summary(categories, console)
    console.print(f"wrote {root} in {seconds:.1f} s (seed {seed})")
    if preview:
        sheet = write_contact_sheet(categories[0], out / f"{CATEGORY}_preview.png", seed=seed)
        console.print(f"preview: {sheet}")
