"""`slsg demo`: the main job on the embedded synthetic default, end to end, offline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from slsg.commands._common import console, user_errors
from slsg.demo import DemoConfig, run_demo, summary_table

DEFAULT = DemoConfig()


def command(
    out: Path = typer.Argument(DEFAULT.out, help="working folder (data, run, bundle, video, logs)"),
    steps: int = typer.Option(DEFAULT.steps, help="training steps (a budget that fits the 10 minutes on a 2-core CPU)"),
    size: int = typer.Option(DEFAULT.size, help="model input size (a multiple of 32)"),
    backbone: str = typer.Option(DEFAULT.backbone, help="efficientnet_lite0 (offline weights) | resnet18"),
    seed: int = typer.Option(DEFAULT.seed),
) -> None:
    """synth → train → evaluate → predict → export --int8 → slsg-edge run on a simulated camera → results."""
    with user_errors(RuntimeError):
        report = run_demo(DemoConfig(out=out, steps=steps, size=size, backbone=backbone, seed=seed), console)
        (out / "demo_report.json").write_text(json.dumps(report, indent=2, default=str))
        console.print(summary_table(report))
