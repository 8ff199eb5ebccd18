"""Predictors over exported models for `slsg evaluate --backend onnx…` (docs/architecture.md, Predictors).

The edge runtime's ONNX Runtime backend already fits the contract (uint8 BGR N×H×W×3 → float32 maps
N×H×W); this is the training side's name for it, so evaluation and the runtime run the very same code.
"""

from __future__ import annotations

from pathlib import Path

from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend


class OnnxPredictor(OnnxRuntimeBackend):
    """`OnnxPredictor(path)(frames) -> maps`; `.run(frames)` also gives the in-graph scores."""

    def __init__(self, onnx_path: Path, threads: int | None = None,
                 providers: list[str] | str = "auto") -> None:
        path = Path(onnx_path)
        super().__init__(path, threads=threads, providers=providers, name=f"onnx:{path.name}")


def bundle_predictor(bundle_root: Path, precision: str = "fp32", threads: int | None = None) -> OnnxPredictor:
    """The predictor for one model of a verified bundle (fp32, fp16, int8, int8-cpu)."""
    from edge_runtime.bundle import BundleError, load_bundle

    bundle = load_bundle(Path(bundle_root))
    models = bundle.models
    if precision not in models:
        have = ", ".join(sorted(models)) or "none"
        raise BundleError(f"{bundle_root} has no {precision} model (has {have}): "
                          "re-export with `slsg export ... --fp16/--int8`")
    return OnnxPredictor(models[precision], threads=threads)
