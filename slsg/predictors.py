"""One way to get a Predictor for a RUN or a bundle, whatever the backend: evaluate, predict and bench share it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.scoring import Threshold

BACKENDS = ("torch", "onnx", "onnx-fp16", "onnx-int8", "trt-fp16", "trt-int8")
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass
class Loaded:
    predict: Predictor
    size: int
    threshold: Threshold | None
    name: str


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
        from slsg.checkpoint import load_run
        from slsg.inference import TorchPredictor

        r, model = load_run(run, device)
        return Loaded(TorchPredictor(model, device), r.model_config.size, r.threshold, "torch")
    from edge_runtime.backends import select_backend
    from edge_runtime.bundle import load_bundle

    b = load_bundle(find_bundle(run, bundle))
    runtime = select_backend(b, backend, threads=threads)
    return Loaded(lambda x: runtime.run(x).maps, b.size[0], b.threshold_for(runtime.model), runtime.name)
