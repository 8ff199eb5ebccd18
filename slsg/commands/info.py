"""`slsg info`: parameters and GMACs per part, counted by the repo's MAC counter."""

from __future__ import annotations

import json

import torch
import typer
from rich.table import Table

from edge_runtime.preprocess import parse_size
from slsg.commands._common import console, user_errors
from slsg.heads import GlobalContextHead
from slsg.heads.local_patch import LocalPatchHead
from slsg.model import ModelConfig, build_model
from slsg.model.macs import PARTS, PartsView, count_macs, count_params


def command(
    backbone: str = typer.Option("resnet18", help="resnet18 | efficientnet_lite0"),
    size: str = typer.Option("256", help="input size: N or HxW (height x width), multiples of 32"),
    head: bool = typer.Option(True, help="count the fitted heads too (global context, local patch memory)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Parameters (total, trainable) and GMACs per part of the SLSG network."""
    with user_errors():
        hw = parse_size(size)
        cfg = ModelConfig(backbone=backbone, size=hw)
        detector = PartsView(build_model(cfg), GlobalContextHead(backbone) if head else None,
                             LocalPatchHead(backbone) if head else None).eval()
        macs = count_macs(detector, torch.zeros(1, 3, *hw))
        total, trainable = count_params(detector)
        parts = {}
        for attr, label in PARTS.items():
            module = getattr(detector, attr, None)
            if module is None:
                continue
            p_total, p_train = count_params(module)
            parts[label] = {"params": p_total, "params_trainable": p_train, "gmacs": macs[label] / 1e9}
        report = {"backbone": backbone, "size": list(hw), "params_total": total, "params_trainable": trainable,
                  "gmacs": macs["total"] / 1e9, "parts": parts}
        if as_json:
            print(json.dumps(report, indent=2))
            return
        table = Table(title=f"SLSG · {backbone} · {hw[0]}×{hw[1]} (H×W)")
        for col in ("part", "params (M)", "trainable (M)", "GMACs"):
            table.add_column(col, justify="left" if col == "part" else "right")
        for label, p in parts.items():
            table.add_row(label, f"{p['params'] / 1e6:.2f}", f"{p['params_trainable'] / 1e6:.2f}", f"{p['gmacs']:.2f}")
        table.add_row("[bold]total", f"[bold]{total / 1e6:.2f}", f"[bold]{trainable / 1e6:.2f}",
                      f"[bold]{report['gmacs']:.2f}")
        console.print(table)

