"""The SLSG network (reference §1), device-agnostic, nothing run at import."""

from slsg.model.config import BACKBONES, ModelConfig
from slsg.model.network import SLSGNet, anomaly_map, build_model

__all__ = ["BACKBONES", "ModelConfig", "SLSGNet", "anomaly_map", "build_model"]
