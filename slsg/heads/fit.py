"""Fitting the global-context head on good training images: seconds to minutes on a CPU, no gradients."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from slsg.heads.global_context import FitReport, GlobalContextHead, GlobalHeadConfig, gaussian_from_descriptors
from slsg.model import SLSGNet
from slsg.model.preprocess import InputAdapter, normalization_for


@torch.no_grad()
def descriptors(model: SLSGNet, head: GlobalContextHead, images: Sequence[np.ndarray], batch: int = 8) -> np.ndarray:
    """Descriptors N×D of uint8 BGR images at the model size, through the model's frozen encoder (eval mode)."""
    device = next(model.parameters()).device
    adapter = InputAdapter(normalization_for(model.cfg.normalization_name)).to(device)
    was_training = model.training
    model.eval()
    head.to(device).eval()
    out = []
    try:
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(np.stack(images[i:i + batch]))).to(device)
            out.append(head.descriptor(model.encode(adapter(x))).double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, head.dims))


def fit_global_head(model: SLSGNet, images: Sequence[np.ndarray], cfg: GlobalHeadConfig | None = None,
                    batch: int = 8) -> tuple[GlobalContextHead, FitReport]:
    """A head whose Gaussian is fitted on `images` (good training images, never validation or test)."""
    t0 = time.perf_counter()
    head = GlobalContextHead(model.cfg.backbone, cfg)
    head.load_context_imagenet()
    x = descriptors(model, head, images, batch)
    stats, shrinkage, frozen = gaussian_from_descriptors(x, head.cfg.estimator)
    head.set_gaussian(**stats)
    report = FitReport(n_images=len(images), dims=head.dims, shrinkage=shrinkage, frozen_dims=frozen,
                       seconds=time.perf_counter() - t0, estimator=head.cfg.estimator)
    return head.eval(), report
