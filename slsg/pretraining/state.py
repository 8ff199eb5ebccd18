"""Resumable pre-training state and the encoder file, as safetensors + JSON (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from slsg.checkpoint import state_for_saving, write_json

ENCODER_FILE = "encoder.safetensors"
INFO_FILE = "pretrain.json"
STATE_WEIGHTS = "pretrain_state.safetensors"
STATE_JSON = "pretrain_state.json"
PREVIEW_FILE = "preview.png"
LOG_FILE = "log.jsonl"


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomic: write a temp file then rename, so an interrupted save never leaves a broken file."""

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (`opt.<param index>.<name>`) and the JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, plain = {}, {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{name}"] = value.detach().cpu().contiguous().clone().reshape(-1) \
                    if value.ndim == 0 else value.detach().cpu().contiguous().clone()
                if value.ndim == 0:
                    plain.setdefault("scalars", []).append(f"{idx}.{name}")
            else:
                plain.setdefault("values", {})[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], **plain}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], plain: dict) -> None:
    scalars = set(plain.get("scalars", []))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            idx, name = key[4:].split(".", 1)
            state.setdefault(int(idx), {})[name] = value.reshape(()) if f"{idx}.{name}" in scalars else value
    for key, value in plain.get("values", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def save_state(root: Path, net: nn.Module, optimizer: torch.optim.Optimizer, step: int, meta: dict) -> None:
    opt_tensors, opt_plain = optimizer_tensors(optimizer)
    tensors = {f"net.{k}": v for k, v in state_for_saving(net).items()} | opt_tensors
    _save_tensors(root / STATE_WEIGHTS, tensors)
    write_json(root / STATE_JSON, {"step": step, "optimizer": opt_plain, **meta})


def has_state(root: Path) -> bool:
    return (root / STATE_WEIGHTS).is_file() and (root / STATE_JSON).is_file()


def read_state_meta(root: Path) -> dict:
    return json.loads((root / STATE_JSON).read_text())


def load_state(root: Path, net: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore the network and optimizer; returns the step to continue from."""

    tensors = load_file(str(root / STATE_WEIGHTS))
    meta = read_state_meta(root)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, strict=True)
    restore_optimizer(optimizer, tensors, meta["optimizer"])
    return int(meta["step"])


def save_encoder(root: Path, trunk: nn.Module, backbone: str) -> Path:
    """Exactly the trunk's state-dict keys, so `load_trunk_weights` (and `slsg train --encoder-weights`) take it."""
    path = root / ENCODER_FILE
    _save_tensors(path, state_for_saving(trunk), metadata={"format": "pt", "slsg": "pretrained-encoder",
                                                           "backbone": backbone})
    return path


def encoder_file(path: Path) -> Path:
    """The trunk weights file behind what `slsg pretrain -o` wrote: the folder or the file itself."""
    path = Path(path)
    return path / ENCODER_FILE if path.is_dir() else path
