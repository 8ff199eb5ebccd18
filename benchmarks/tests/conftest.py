"""A tiny real RUN (faithful ResNet-18 at 64², random weights) and a bundle exported from it by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge_runtime.manifest import Manifest, write_manifest
from edge_runtime.preprocess import IMAGENET, preprocess_spec
from edge_runtime.scoring import SCORE_DEFINITION, Threshold
from edge_runtime.tests.conftest import fake_trt  # noqa: F401 — the fake NVIDIA bindings, for test_trt_check
from slsg.checkpoint import load_run, save_run
from slsg.inference import DeployModel
from slsg.model import ModelConfig, build_model

SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bench") / "run"
    model = build_model(ModelConfig(size=SIZE)).eval()
    save_run(root, model, {"threshold": Threshold(0.5, 0.01, 10, {"0.5": 0.3}).to_dict()})
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path) -> Path:
    run, model = load_run(tiny_run)
    root = tiny_run.parent / "model.slsg"
    root.mkdir()
    torch.onnx.export(DeployModel(model).eval(), (torch.zeros(1, SIZE, SIZE, 3, dtype=torch.uint8),),
                      str(root / "model.onnx"), input_names=["image"], output_names=["anomaly_map", "score"],
                      dynamo=False, opset_version=17)
    write_manifest(root, Manifest.new({
        "model": run.model_config.to_dict(),
        "input": {"name": "image", "dtype": "uint8", "shape": [1, SIZE, SIZE, 3], "layout": "NHWC",
                  "color": "BGR"},
        "outputs": {"anomaly_map": {"dtype": "float32", "shape": [1, 1, SIZE, SIZE]},
                    "score": {"dtype": "float32", "shape": [1]}},
        "preprocess": preprocess_spec((SIZE, SIZE), IMAGENET),
        "score": SCORE_DEFINITION,
        "threshold": run.threshold.to_dict(),
        "data_fingerprint": "test",
        "versions": {"torch": torch.__version__},
        "models": {"fp32": "model.onnx"},
    }))
    return root
