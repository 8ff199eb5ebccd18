"""Which bundle ONNX file and which builder flags make an fp32 / fp16 / int8 engine, per TensorRT version.

≤ 10.x: FP16 = the FP16 flag on the fp32 graph; INT8 = the Q/DQ graph with INT8 (+FP16 for layers left
without Q/DQ), or — when asked and the bundle carries calibration tensors — the legacy entropy calibrator
on the fp32 graph. Top-k, softmax and reductions are pinned to fp32 there (index selection and the score
are fragile in low precision). 11.x: strongly typed only, so the types come from the file itself:
`model.fp16.onnx`, `model.int8.onnx`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import PrecisionError
from .versions import ApiPlan

PRECISIONS = ("fp32", "fp16", "int8")
#: TensorRT LayerType names kept in fp32 when precision flags allow lower types (≤ 10).
FLOAT_PINNED_LAYERS = ("TOPK", "SOFTMAX", "REDUCE")

_EXPORT_FLAG = {"fp16": "--fp16", "int8": "--int8"}
_DESCRIPTION = {"fp32": "fp32 model", "fp16": "FP16 model", "int8": "INT8 Q/DQ model"}


@dataclass(frozen=True)
class PrecisionPlan:
    precision: str
    onnx_name: str                       # a file of the bundle
    builder_flags: tuple[str, ...]       # names of tensorrt.BuilderFlag members
    strongly_typed: bool
    legacy_calibrator: bool
    pinned_float_layers: tuple[str, ...]  # LayerType names forced to fp32 (empty when strongly typed)

    @property
    def variant(self) -> str:
        """Distinguishes two int8 engines of one bundle in the cache (Q/DQ vs calibrator)."""
        return "calib" if self.legacy_calibrator else "qdq" if self.precision == "int8" else "plain"


def _require(models: Mapping[str, str], precision: str) -> str:
    name = models.get(precision)
    if not name:
        flag = _EXPORT_FLAG.get(precision, "")
        raise PrecisionError(
            f"the bundle has no {_DESCRIPTION[precision]} (manifest 'models' lacks {precision!r}); "
            f"re-export it: slsg export RUN -o BUNDLE {flag}".rstrip())
    return name


def plan_precision(precision: str, api: ApiPlan, models: Mapping[str, str], *,
                   legacy_calibrator: bool = False, has_calibration_tensors: bool = False) -> PrecisionPlan:
    """The recipe for one engine; `models` maps precision → ONNX file name present in the bundle."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if legacy_calibrator and precision != "int8":
        raise PrecisionError("--legacy-calibrator only applies to --int8")
    if api.strongly_typed_only:
        if legacy_calibrator:
            raise PrecisionError(
                f"TensorRT {api.version} removed implicit INT8 calibration (IInt8EntropyCalibrator2); "
                "build --int8 without --legacy-calibrator: it uses the bundle's Q/DQ model")
        return PrecisionPlan(precision, _require(models, precision), (), True, False, ())
    if precision == "fp32":
        return PrecisionPlan("fp32", _require(models, "fp32"), (), False, False, ())
    if precision == "fp16":
        return PrecisionPlan("fp16", _require(models, "fp32"), ("FP16", "PREFER_PRECISION_CONSTRAINTS"),
                             False, False, FLOAT_PINNED_LAYERS)
    flags = ("INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS")
    if legacy_calibrator:
        if not has_calibration_tensors:
            raise PrecisionError(
                "the legacy calibrator needs calibration tensors in the bundle and this one has none; "
                "re-export with --int8 (it stores them), or build --int8 without --legacy-calibrator "
                "to use the Q/DQ model")
        return PrecisionPlan("int8", _require(models, "fp32"), flags, False, True, FLOAT_PINNED_LAYERS)
    return PrecisionPlan("int8", _require(models, "int8"), flags, False, False, FLOAT_PINNED_LAYERS)
