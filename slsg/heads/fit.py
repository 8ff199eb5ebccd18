"""Fitting the heads that are statistics of good images (the global Gaussian, the local patch memory): one pass of
the frozen encoder over the training images feeds both; seconds to a couple of minutes on a CPU, no gradients.

Each fitted head also scores every training image with a fit made *without* that image (k folds): those scores are
what a new good image would get, so they join the validation images in the head's good reference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from edge_runtime.heads.memory import image_scores
from slsg.heads.folds import CROSS_FIT_FOLDS, CROSS_FIT_SEED, fold_indices
from slsg.heads.global_context import (
    FitReport,
    GlobalContextHead,
    GlobalHeadConfig,
    cross_fitted_distances,
    gaussian_from_descriptors,
)
from slsg.heads.local_patch import LocalHeadConfig, LocalPatchHead, choose_memory, patch_rows
from slsg.model import SLSGNet
from slsg.model.preprocess import InputAdapter, normalization_for

#: Fewer training images than this (two per fold) give no cross-fitted scores: the reference is validation only.
MIN_CROSS_FIT_IMAGES = 2 * CROSS_FIT_FOLDS
#: The heads that are fitted from good images (not trained), in the order the graph outputs their scores.
FITTED_HEADS = ("global", "local")


@dataclass
class FittedHeads:
    """The fitted heads (None where not asked for), their fit records, and each training image's cross-fitted score
    per head (empty when there are too few images to cross-fit)."""

    global_head: GlobalContextHead | None = None
    local_head: LocalPatchHead | None = None
    reports: dict[str, dict] = field(default_factory=dict)
    cross_fitted: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def _encoder_outputs(model: SLSGNet, images: Sequence[np.ndarray], global_head: GlobalContextHead | None,
                     local_head: LocalPatchHead | None, batch: int) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                            int]:
    """(global descriptors N×D, local patch rows (N·P)×D, patches per image P), the encoder run once per image."""
    device = next(model.parameters()).device
    adapter = InputAdapter(normalization_for(model.cfg.normalization_name)).to(device)
    was_training = model.training
    model.eval()
    desc, rows, per_image = [], [], 0
    try:
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(np.stack(images[i:i + batch]))).to(device)
            feats = model.encode(adapter(x))
            if global_head is not None:
                desc.append(global_head.to(device).descriptor(feats).double().cpu().numpy())
            if local_head is not None:
                patches = local_head.patches(feats)
                per_image = patches.shape[2] * patches.shape[3]
                rows.append(patch_rows(patches))
    finally:
        model.train(was_training)
    return (np.concatenate(desc) if desc else None, np.concatenate(rows) if rows else None, per_image)


def cross_fitted_local(rows: np.ndarray, per_image: int, cfg: LocalHeadConfig,
                       seed: int = CROSS_FIT_SEED) -> np.ndarray:
    """Each training image's local score against a memory chosen without it (the folds every fitted head shares)."""
    n = rows.shape[0] // per_image
    by_image = rows.reshape(n, per_image, -1)
    out = np.empty(n)
    for held in fold_indices(n, seed=seed):
        kept = np.setdiff1d(np.arange(n), held)
        fit = choose_memory(by_image[kept].reshape(-1, rows.shape[1]), cfg)
        out[held] = image_scores(fit.memory, by_image[held].reshape(-1, rows.shape[1]), per_image)
    return out


def fit_heads(model: SLSGNet, images: Sequence[np.ndarray], heads: Sequence[str],
              global_cfg: GlobalHeadConfig | None = None, local_cfg: LocalHeadConfig | None = None,
              batch: int = 8, seed: int = CROSS_FIT_SEED) -> FittedHeads:
    """The fitted heads among `heads`, fitted on `images` (good training images, never validation or test)."""
    wanted = [h for h in heads if h in FITTED_HEADS]
    out = FittedHeads()
    if not wanted:
        return out
    t0 = time.perf_counter()
    global_head = local_head = None
    if "global" in wanted:
        global_head = GlobalContextHead(model.cfg.backbone, global_cfg)
        global_head.load_context_imagenet()
    if "local" in wanted:
        local_head = LocalPatchHead(model.cfg.backbone, local_cfg)
    x, rows, per_image = _encoder_outputs(model, images, global_head, local_head, batch)
    encode_s = time.perf_counter() - t0
    cross = len(images) >= MIN_CROSS_FIT_IMAGES
    if global_head is not None:
        t = time.perf_counter()
        stats, shrinkage, frozen = gaussian_from_descriptors(x, global_head.cfg.estimator)
        global_head.set_gaussian(**stats)
        extra = {}
        if cross:
            out.cross_fitted["global"] = cross_fitted_distances(x, global_head.cfg.estimator, seed=seed)
            extra = {"cross_fitted_folds": CROSS_FIT_FOLDS,
                     "cross_fitted_median": float(np.median(out.cross_fitted["global"]))}
        report = FitReport(n_images=len(images), dims=global_head.dims, shrinkage=shrinkage, frozen_dims=frozen,
                           seconds=encode_s + time.perf_counter() - t, estimator=global_head.cfg.estimator,
                           extra=extra)
        out.global_head, out.reports["global"] = global_head.eval(), report.to_dict()
    if local_head is not None:
        t = time.perf_counter()
        fit = choose_memory(rows, local_head.cfg)
        local_head = LocalPatchHead(model.cfg.backbone, local_head.cfg, len(fit.memory))
        local_head.set_memory(fit.memory)
        report = {"n_images": len(images), "dims": local_head.dims, "patches_per_image": per_image, **fit.report()}
        if cross:
            out.cross_fitted["local"] = cross_fitted_local(rows, per_image, local_head.cfg, seed)
            report["cross_fitted_folds"] = CROSS_FIT_FOLDS
        report["seconds"] = round(encode_s + time.perf_counter() - t, 1)
        out.local_head, out.reports["local"] = local_head.eval(), report
    return out


def descriptors(model: SLSGNet, head: GlobalContextHead, images: Sequence[np.ndarray], batch: int = 8) -> np.ndarray:
    """Descriptors N×D of uint8 BGR images at the model size, through the model's frozen encoder (eval mode)."""
    return _encoder_outputs(model, images, head, None, batch)[0]
