"""Heads that turn the network's features into image scores, and the rule that fuses them into one."""

from slsg.heads.fusion import HEAD_CHOICES, FusionConfig, HeadNorm, ScoreFusion, fuse_numpy, heads_for
from slsg.heads.global_context import GlobalContextHead, GlobalHeadConfig, load_head, save_head

__all__ = ["HEAD_CHOICES", "FusionConfig", "GlobalContextHead", "GlobalHeadConfig", "HeadNorm", "ScoreFusion",
           "fuse_numpy", "heads_for", "load_head", "save_head"]
