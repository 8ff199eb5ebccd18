"""One way to get a Predictor for a RUN or a bundle, whatever the backend: evaluate, predict and bench share it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.backends import select_backend
from edge_runtime.backends.base import (
    Outputs,  # noqa: F401  (the Predictor contract's result)
    model_of,
)
from edge_runtime.bundle import load_bundle
from edge_runtime.scoring import Threshold
from slsg.checkpoint import open_run
from slsg.inference import TorchPredictor, load_deploy

BACKENDS = ("torch", "onnx", "onnx-fp16", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8", "trt-fp16",
            "trt-int8", "auto")
Predictor = Callable[[np.ndarray], "Outputs"]


@dataclass
class Loaded:
    predict: Predictor  # uint8 BGR N×H×W×3 → edge_runtime.backends.Outputs
    size: tuple[int, int]  # (height, width)
    threshold: Threshold | None
    name: str
    scores: dict | None = None  # how the decision score is made (RUN config / bundle manifest `scores`)
    good_reference: dict | None = None  # the good scores the threshold came from (RUN / FP32 model only)


def is_bundle(path: Path) -> bool:
    return (Path(path) / "manifest.json").is_file()


def find_bundle(run: Path, bundle: Path | None) -> Path:
    if bundle is not None:
        return bundle
    if is_bundle(run):
        return run
    candidate = Path(run) / "model.slsg"
    if is_bundle(candidate):
        return candidate
    raise FileNotFoundError(f"no bundle for {run}: export one with `slsg export {run} -o {candidate}` "
                            "or pass --bundle")


def load_predictor(run: Path, backend: str = "torch", bundle: Path | None = None, device: str = "cpu",
                   threads: int | None = None) -> Loaded:
    """torch → the RUN's checkpoint in PyTorch; anything else → the bundle through the runtime's own backends."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        r = open_run(run)
        return Loaded(TorchPredictor(load_deploy(run, device), device), r.model_config.hw, r.threshold, "torch",
                      r.config.get("scores"), r.config.get("good_reference"))

    b = load_bundle(find_bundle(run, bundle))
    runtime = select_backend(b, backend, threads=threads)
    model = model_of(runtime)
    return Loaded(runtime.run, b.size, b.threshold_for(model), runtime.name, b.manifest.scores,
                  b.manifest.good_reference if model == "fp32" else None)
