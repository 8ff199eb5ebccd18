"""What is exported and what evaluation runs: uint8 BGR frames in, the map and every score out.

`DeployModel` is the whole detector — input adapter, SLSG network, the global-context head when the RUN has
one, and the score fusion — so PyTorch, ONNX Runtime, OpenVINO and TensorRT all compute the same thing from
the same graph. `TorchPredictor` wraps it in the runtime backends' contract (`edge_runtime.backends.Outputs`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.backends.base import HEAD_PREFIX, MAP_PREFIX, Outputs
from edge_runtime.scoring import SCORE_DEFINITION, TOP_K
from slsg.checkpoint import open_run
from slsg.heads import FusionConfig, GlobalContextHead, ScoreFusion, load_head
from slsg.heads.local_patch import LocalPatchHead, load_local_head
from slsg.model import SLSGNet, anomaly_map
from slsg.model.preprocess import InputAdapter, normalization_for


def topk_mean(amap: torch.Tensor, k: int) -> torch.Tensor:
    """The SLSG image score in torch: mean of the k largest map values (edge_runtime.scoring.image_score)."""
    k = min(k, amap.shape[-1] * amap.shape[-2])
    return torch.topk(amap.flatten(1), k, dim=1).values.mean(dim=1)


class DeployModel(nn.Module):
    """uint8 BGR N×H×W×3 → (anomaly_map N×1×H×W, score N, score_<head> N for each head, map_local N×1×H×W).

    The heads' scores are always computed (the line sees which head flagged a part); `fusion` decides which of
    them make `score`, the value the threshold applies to. Without fitted heads only `score_slsg` exists; the
    local head adds its own map (`map_local`: each pixel's patch distance to the nearest good patch), so the
    heatmap can show where a small defect is even when SLSG's map is calm.
    """

    def __init__(self, model: SLSGNet, global_head: GlobalContextHead | None = None,
                 fusion: FusionConfig | None = None, local_head: LocalPatchHead | None = None) -> None:
        super().__init__()

        self.adapter = InputAdapter(normalization_for(model.cfg.normalization_name))
        self.model = model
        self.global_head = global_head
        self.local_head = local_head
        self.top_k = TOP_K
        self.fusion_cfg = fusion or FusionConfig(("slsg",))
        missing = [h for h in self.fusion_cfg.heads if h not in self.head_names]
        if missing:
            raise ValueError(f"the score uses head(s) {missing} that this model does not have "
                             f"(it has {list(self.head_names)}): fit them first (`slsg fit-head`)")
        self.fusion = ScoreFusion(self.fusion_cfg)

    @property
    def head_names(self) -> tuple[str, ...]:
        return ("slsg", *(["global"] if self.global_head is not None else []),
                *(["local"] if self.local_head is not None else []))

    @property
    def map_names(self) -> tuple[str, ...]:
        """Heads with a map of their own beside SLSG's `anomaly_map`."""
        return ("local",) if self.local_head is not None else ()

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("anomaly_map", "score", *(HEAD_PREFIX + h for h in self.head_names),
                *(MAP_PREFIX + h for h in self.map_names))

    def score_spec(self) -> dict:
        """What each score output means: the bundle manifest's `scores` section and the ONNX metadata."""

        spec = {"score": {"heads": list(self.fusion_cfg.heads), "rule": self.fusion_cfg.rule,
                          "norms": self.fusion_cfg.to_dict()["norms"], "definition": self.fusion_cfg.describe()},
                HEAD_PREFIX + "slsg": {**SCORE_DEFINITION, "head": "slsg"}}
        if self.global_head is not None:
            spec[HEAD_PREFIX + "global"] = {"kind": "mahalanobis", "head": "global", "dims": self.global_head.dims,
                                            "descriptor": self.global_head.cfg.to_dict(),
                                            "map": "none (an image-level score)"}
        if self.local_head is not None:
            spec[HEAD_PREFIX + "local"] = {"kind": "nearest_patch_distance", "head": "local",
                                           "dims": self.local_head.dims, "memory": self.local_head.memory_size,
                                           "patches": self.local_head.cfg.to_dict(),
                                           "map": MAP_PREFIX + "local (the patch distances at the input size)",
                                           "score": "the map's maximum"}
        return spec

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.encode(self.adapter(image))
        logits, _ = self.model.decode(feats)
        amap = anomaly_map(logits).unsqueeze(1)
        heads = {"slsg": topk_mean(amap, self.top_k)}
        if self.global_head is not None:
            heads["global"] = self.global_head(feats)
        maps = []
        if self.local_head is not None:
            patch_map, heads["local"] = self.local_head(feats)
            maps.append(F.interpolate(patch_map, size=tuple(amap.shape[-2:]), mode="bilinear", align_corners=False))
        return (amap, self.fusion(heads), *(heads[h] for h in self.head_names), *maps)


class TorchPredictor:
    """Callable: uint8 BGR N×H×W×3 numpy → `Outputs` (see docs/architecture.md, Predictors)."""

    def __init__(self, deploy: DeployModel | SLSGNet, device: str | torch.device = "cpu", batch: int = 8) -> None:
        if isinstance(deploy, SLSGNet):
            deploy = DeployModel(deploy)
        self.deploy = deploy.to(device).eval()
        self.device = torch.device(device)
        self.batch = batch

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> Outputs:
        parts = []
        names = self.deploy.head_names
        for i in range(0, len(images), self.batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + self.batch])).to(self.device)
            amap, score, *rest = self.deploy(x)
            heads, maps = rest[:len(names)], rest[len(names):]
            parts.append(Outputs(amap[:, 0].float().cpu().numpy(), score.float().cpu().numpy(),
                                 {n: h.float().cpu().numpy() for n, h in zip(names, heads)},
                                 {n: m[:, 0].float().cpu().numpy() for n, m in zip(self.deploy.map_names, maps)}))
        if not parts:
            h, w = self.deploy.model.cfg.hw
            return Outputs(np.zeros((0, h, w), np.float32), np.zeros(0, np.float32),
                           {n: np.zeros(0, np.float32) for n in names},
                           {n: np.zeros((0, h, w), np.float32) for n in self.deploy.map_names})
        return Outputs.concat(parts)


def load_deploy(run: Path, device: str | torch.device = "cpu") -> DeployModel:
    """A RUN's whole detector: network, fitted heads (where fitted) and the fusion its config.json records."""

    r = open_run(run)
    fusion = FusionConfig.from_dict(r.config["scores"]) if "scores" in r.config else None
    return DeployModel(r.load_model(device), load_head(run), fusion, load_local_head(run)).to(device).eval()
