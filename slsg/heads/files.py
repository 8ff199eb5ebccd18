"""A fitted head on disk: its tensors as safetensors and its configuration and fit record as JSON, each written
atomically (temp file + rename) — nothing is pickled, and an interrupted save never leaves half a head."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def save_head_files(module: nn.Module, run: Path, weights: str, config: str, meta: dict, tag: str) -> None:
    run = Path(run)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    tmp = run / (weights + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "slsg": tag})
    tmp.replace(run / weights)
    tmp = run / (config + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(run / config)


def read_head_files(run: Path, weights: str, config: str) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(meta, tensors) of a head saved in `run`, None when the RUN has no such head; a damaged file raises with
    the way out."""

    run = Path(run)
    if not (run / config).is_file():
        return None
    meta = json.loads((run / config).read_text())
    path = run / weights
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is missing or damaged ({exc}): re-fit it with `slsg fit-head {run} DATA`") from exc
    return meta, state


def remove_head_files(run: Path, *names: str) -> None:
    """A head the decision score no longer uses leaves no stale file (export reads what is there)."""
    for name in names:
        (Path(run) / name).unlink(missing_ok=True)
