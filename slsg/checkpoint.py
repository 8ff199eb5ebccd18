"""RUN folders: `model.safetensors` + `config.json`. Loading never unpickles."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from edge_runtime.errors import SlsgError
from edge_runtime.scoring import Threshold
from slsg.model import ModelConfig, SLSGNet, build_model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(SlsgError, RuntimeError):
    """A RUN folder that cannot be loaded: missing, damaged or of another architecture."""


@dataclass
class Run:
    """A trained model and what it was made from."""

    root: Path
    model_config: ModelConfig
    config: dict = field(default_factory=dict)

    @property
    def threshold(self) -> Threshold | None:
        t = self.config.get("threshold")
        return Threshold.from_dict(t) if t else None

    def load_model(self, device: str | torch.device = "cpu") -> SLSGNet:
        model = build_model(self.model_config)
        load_weights(model, self.root / WEIGHTS_FILE)
        return model.to(device).eval()


def state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; shared storage is cloned so safetensors accepts it."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_run(root: Path, model: SLSGNet, config: dict) -> None:
    """Write weights and config atomically (temp file + rename), so an interrupted save never corrupts a RUN."""

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (WEIGHTS_FILE + ".tmp")
    save_file(state_for_saving(model), str(tmp), metadata={"format": "pt", "slsg": "1"})
    tmp.replace(root / WEIGHTS_FILE)
    write_json(root / CONFIG_FILE, {"model": model.cfg.to_dict(), **{k: v for k, v in config.items() if k != "model"}})


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str))
    tmp.replace(path)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: is this a RUN folder made by `slsg train`?")
    try:
        sd = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path} is damaged or truncated ({exc}); re-train or restore it from a backup") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or shape:
        raise CheckpointError(
            f"{path} does not match this architecture: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(shape)} of another shape "
            f"(e.g. {shape[:3]}). Check that config.json belongs to these weights."
        )
    model.load_state_dict(sd, strict=True)


def open_run(root: Path) -> Run:
    root = Path(root)
    cfg_path = root / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{root} is not a RUN folder ({CONFIG_FILE} missing); make one with `slsg train`")
    try:
        config = json.loads(cfg_path.read_text())
        model_config = ModelConfig.from_dict(config["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path} is not a valid SLSG config ({exc})") from exc
    return Run(root, model_config, config)


def load_run(root: Path, device: str | torch.device = "cpu") -> tuple[Run, SLSGNet]:
    run = open_run(root)
    return run, run.load_model(device)
