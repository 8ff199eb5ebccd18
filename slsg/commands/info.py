"""`slsg info`: parameters and GMACs per part, counted by the repo's MAC counter."""

from __future__ import annotations

import json

import typer

from slsg.commands._common import console, user_errors


def command(
    backbone: str = typer.Option("resnet18", help="resnet18 | efficientnet_lite0"),
    size: int = typer.Option(256, help="input size, a multiple of 32"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Parameters (total, trainable) and GMACs per part of the SLSG network."""
    with user_errors():
        import torch
        from rich.table import Table

        from slsg.model import ModelConfig, build_model
        from slsg.model.macs import PARTS, count_macs, count_params

        cfg = ModelConfig(backbone=backbone, size=size)
        model = build_model(cfg).eval()
        macs = count_macs(model, torch.zeros(1, 3, size, size))
        total, trainable = count_params(model)
        parts = {}
        for attr, label in PARTS.items():
            p_total, p_train = count_params(getattr(model, attr))
            parts[label] = {"params": p_total, "params_trainable": p_train, "gmacs": macs[label] / 1e9}
        report = {"backbone": backbone, "size": size, "params_total": total, "params_trainable": trainable,
                  "gmacs": macs["total"] / 1e9, "parts": parts}
        if as_json:
            print(json.dumps(report, indent=2))
            return
        table = Table(title=f"SLSG · {backbone} · {size}×{size}")
        for col in ("part", "params (M)", "trainable (M)", "GMACs"):
            table.add_column(col, justify="left" if col == "part" else "right")
        for label, p in parts.items():
            table.add_row(label, f"{p['params'] / 1e6:.2f}", f"{p['params_trainable'] / 1e6:.2f}", f"{p['gmacs']:.2f}")
        table.add_row("[bold]total", f"[bold]{total / 1e6:.2f}", f"[bold]{trainable / 1e6:.2f}",
                      f"[bold]{report['gmacs']:.2f}")
        console.print(table)
