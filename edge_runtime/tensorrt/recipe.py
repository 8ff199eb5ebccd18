"""Bundle + precision + TensorRT + GPU → the engine recipe (precision plan) and its cache key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cache import BundleLike, CacheLookup, EngineKey, lookup, onnx_sha256
from .device import DeviceInfo
from .errors import PrecisionError, TensorRTError
from .precision import PrecisionPlan, plan_precision
from .versions import ApiPlan

#: manifest["calibration"]["tensors"]: a bundle-relative .npy of uint8 N×H×W×3 BGR frames.
CALIBRATION_TENSORS_KEY = "tensors"


@dataclass(frozen=True)
class Recipe:
    plan: PrecisionPlan
    key: EngineKey
    onnx_path: Path


def bundle_models(bundle: BundleLike) -> dict[str, str]:
    """precision → bundle-relative ONNX name, for files that exist (Bundle.models when the bundle has it)."""
    root = Path(bundle.root)
    models = getattr(bundle, "models", None)
    if isinstance(models, dict):
        out = {}
        for prec, p in models.items():
            p = Path(p)
            out[prec] = (p.relative_to(root) if p.is_absolute() else p).as_posix()
        return out
    listed = bundle.manifest.get("models", {}) or {}
    return {prec: str(name) for prec, name in listed.items() if (root / str(name)).is_file()}


def calibration_tensors(bundle: BundleLike) -> Path | None:
    entry = bundle.manifest.get("calibration") or {}
    name = entry.get(CALIBRATION_TENSORS_KEY) if isinstance(entry, dict) else None
    if not name:
        return None
    path = Path(bundle.root) / str(name)
    return path if path.is_file() else None


def make_recipe(bundle: BundleLike, precision: str, api: ApiPlan, device: DeviceInfo, *,
                legacy_calibrator: bool = False) -> Recipe:
    plan = plan_precision(precision, api, bundle_models(bundle), legacy_calibrator=legacy_calibrator,
                          has_calibration_tensors=calibration_tensors(bundle) is not None)
    try:
        sha = onnx_sha256(bundle.manifest, plan.onnx_name)
    except KeyError as exc:
        raise PrecisionError(str(exc.args[0])) from exc
    key = EngineKey.for_device(device, str(api.version), plan.precision, plan.variant, plan.onnx_name, sha)
    return Recipe(plan, key, Path(bundle.root) / plan.onnx_name)


def find_in_cache(bundle: BundleLike, precision: str, api: ApiPlan, device: DeviceInfo) -> CacheLookup:
    """The Q/DQ (or plain) engine first, then a legacy-calibrated int8 one; the first trusted hit wins."""
    reasons = []
    for legacy in ((False, True) if precision == "int8" else (False,)):
        try:
            recipe = make_recipe(bundle, precision, api, device, legacy_calibrator=legacy)
        except PrecisionError as exc:
            reasons.append(str(exc))
            continue
        found = lookup(Path(bundle.root), recipe.key)
        if found.hit:
            return found
        reasons.append(found.reason)
    return CacheLookup(None, "; ".join(reasons))


def find_cached_engine(bundle: BundleLike, precision: str, device: DeviceInfo | None = None) -> Path | None:
    """A trusted engine for this machine, or None (no TensorRT, no GPU, none built, or stale)."""
    from .availability import installed_version, tensorrt_available
    from .device import query_device
    from .versions import api_plan

    if not tensorrt_available():
        return None
    try:
        api = api_plan(installed_version())
        dev = device if device is not None else query_device()
    except TensorRTError:
        return None
    return find_in_cache(bundle, precision, api, dev).engine_path
