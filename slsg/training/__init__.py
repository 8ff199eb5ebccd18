"""SLSG training: the reference recipe (reference §3), resumable, single- or multi-process."""

from slsg.training.config import TrainConfig
from slsg.training.loop import train

__all__ = ["TrainConfig", "train"]
