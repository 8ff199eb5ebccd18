"""Small real RUN folders (64² models, random weights) built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_runtime.scoring import threshold_from_good_scores
from export.job import BundleOptions
from export.pipeline import write_bundle
from slsg.checkpoint import save_run
from slsg.data.synthetic_scene import SynthCounts, write_dataset
from slsg.model import ModelConfig, build_model
from slsg.training import TrainConfig, train

os.environ.setdefault("OMP_NUM_THREADS", "1")


def make_run(root: Path, backbone: str, threshold: bool = True, seed: int = 0) -> Path:


    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone=backbone, size=64), "random")
    config = {"data": {"root": str(root / "no-such-dataset"), "category": "x"}}
    if threshold:
        config["threshold"] = threshold_from_good_scores(np.linspace(0.3, 0.5, 20), 0.05).to_dict()
    save_run(root, model, config)
    return root


@pytest.fixture(scope="session")
def effnet_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run_effnet"), "efficientnet_lite0")


@pytest.fixture(scope="session")
def effnet_bundle(effnet_run, tmp_path_factory) -> Path:
    """One exported bundle shared by the tests that only read (or copy) it."""

    out = tmp_path_factory.mktemp("bundles") / "model.slsg"
    write_bundle(effnet_run, out, BundleOptions(parity_count=4))
    return out


#: A trained tiny RUN: real (if few) optimiser steps on a synthetic LOCO-like dataset whose folder stays
#: reachable, so export finds validation images (thresholds, gate) and test anomalies.
TRAINED_STEPS = 20


def train_tiny_run(root: Path, backbone: str = "efficientnet_lite0", steps: int = TRAINED_STEPS,
                   size: int = 64) -> Path:

    data = write_dataset(root / "data", counts=SynthCounts(16, 12, 8, 6, 6), size=size)
    cfg = TrainConfig(steps=steps, batch=2, encoder_weights="random", checkpoint_every=0)
    return train(data, root / "run", ModelConfig(backbone=backbone, size=size), cfg, progress=False)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("trained"))
