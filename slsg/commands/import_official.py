"""`slsg import-official`: the authors' released `.tch` → a RUN folder (safetensors + config)."""

from __future__ import annotations

from pathlib import Path

import typer

from slsg.checkpoint import save_run
from slsg.commands._common import console, user_errors
from slsg.model import ModelConfig, build_model
from slsg.model.official import convert_official_state_dict
from slsg.model.weights import read_state_dict


def command(
    checkpoint: Path = typer.Argument(..., help="model_data/<category>.tch from the SLSG release"),
    out: Path = typer.Option(..., "-o", "--out", help="RUN folder to write"),
) -> None:
    """Map the reference state-dict layout onto our network (weights_only load: nothing is unpickled)."""
    with user_errors():
        model = build_model(ModelConfig())
        model.load_state_dict(convert_official_state_dict(read_state_dict(checkpoint), model), strict=True)
        save_run(out, model, {"source": {"official": str(checkpoint)}})
        console.print(f"imported [bold]{checkpoint}[/] → {out}; no threshold yet: set one from good images with "
                      f"`slsg threshold {out} DATA --category CATEGORY` (DATA's validation/good images), then "
                      f"`slsg export {out} -o model.slsg`")
