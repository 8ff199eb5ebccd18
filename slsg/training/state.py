"""Resumable training state: weights, SGD momentum and the step, as safetensors + JSON (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from slsg.checkpoint import state_for_saving, write_json

STATE_WEIGHTS = "train_state.safetensors"
STATE_JSON = "train_state.json"


def save_state(root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, meta: dict) -> None:
    tensors = {f"model.{k}": v for k, v in state_for_saving(model).items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"momentum.{names[id(p)]}"] = buf.detach().cpu().contiguous().clone()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (STATE_WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(root / STATE_WEIGHTS)
    write_json(root / STATE_JSON, {"step": step, **meta})


def has_state(root: Path) -> bool:
    return (root / STATE_WEIGHTS).is_file() and (root / STATE_JSON).is_file()


def read_state_meta(root: Path) -> dict:
    return json.loads((root / STATE_JSON).read_text())


def load_state(root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore weights and momentum; returns the step to continue from."""

    tensors = load_file(str(root / STATE_WEIGHTS))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    params = dict(model.named_parameters())
    device = next(model.parameters()).device
    for key, buf in tensors.items():
        if key.startswith("momentum."):
            optimizer.state[params[key[len("momentum."):]]]["momentum_buffer"] = buf.to(device)
    return int(read_state_meta(root)["step"])
