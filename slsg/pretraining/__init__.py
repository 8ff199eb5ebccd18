"""Generative pre-training of the SLSG encoder: masked-patch inpainting + patch-position pretext on good images.

The reference never released this stage (reference §7); `docs/pretraining.md` says what ours does and
what it measurably changes.
"""

from slsg.pretraining.config import PretrainConfig
from slsg.pretraining.loop import pretrain
from slsg.pretraining.state import ENCODER_FILE, encoder_file

__all__ = ["ENCODER_FILE", "PretrainConfig", "encoder_file", "pretrain"]
