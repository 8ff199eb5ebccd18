"""What an engine is made of, decided before TensorRT is touched: which bundle ONNX file and builder
flags per precision and TensorRT version, the batch profile, the DLA core, the workspace, the plugins (with
the kernel sources, Triton and tiles compiled into them) — and the cache key that holds all of it with the GPU
it is built for. Every rule here is tested without TensorRT.

≤ 10.x: FP16 = the FP16 flag on the fp32 graph; INT8 = the Q/DQ graph with INT8 (+FP16 for layers left
without Q/DQ), or — when asked and the bundle carries calibration tensors — the legacy entropy calibrator
on the fp32 graph. Top-k, softmax and reductions are pinned to fp32 there (index selection and the score
are fragile in low precision). 11.x: strongly typed only, so the types come from the file itself:
`model.fp16.onnx`, `model.int8-s8.onnx`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Protocol

from edge_runtime.kernels.identity import plugin_build
from edge_runtime.manifest import Manifest

from .cuda import DeviceInfo
from .errors import BuildRequestError, PluginUnsupported, PrecisionError
from .versions import ApiPlan

PRECISIONS = ("fp32", "fp16", "int8")
#: TensorRT LayerType names kept in fp32 when precision flags allow lower types (≤ 10).
FLOAT_PINNED_LAYERS = ("TOPK", "SOFTMAX", "REDUCE")
#: The fused plugin a bundle may need (manifest "plugins"), registered by edge_runtime.kernels.trt_plugin.
GRAPH_ATTENTION = "slsg::GraphAttention"
#: manifest["calibration"]["tensors"]: a bundle-relative .npy of uint8 N×H×W×3 BGR frames.
CALIBRATION_TENSORS_KEY = "tensors"
NO_DLA = -1

#: The bundle model each engine precision is built from (INT8: the symmetric Q/DQ file TensorRT's parser reads).
MODEL_OF = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-s8"}
_EXPORT_FLAG = {"fp16": "--fp16", "int8": "--int8"}
_DESCRIPTION = {"fp32": "fp32 model", "fp16": "FP16 model", "int8": "INT8 Q/DQ model"}


class BundleLike(Protocol):
    root: Path
    manifest: Manifest


# ---------------------------------------------------------------- precision

@dataclass(frozen=True)
class PrecisionPlan:
    precision: str
    onnx_name: str                        # a file of the bundle
    builder_flags: tuple[str, ...]        # names of tensorrt.BuilderFlag members
    strongly_typed: bool
    legacy_calibrator: bool
    pinned_float_layers: tuple[str, ...]  # LayerType names forced to fp32 (empty when strongly typed)

    @property
    def variant(self) -> str:
        """Distinguishes two int8 engines of one bundle in the cache (Q/DQ vs calibrator)."""
        return "calib" if self.legacy_calibrator else "qdq" if self.precision == "int8" else "plain"


def _require(models: Mapping[str, str], precision: str) -> str:
    """The file of the bundle model an engine of `precision` is built from."""
    name = models.get(MODEL_OF[precision])
    if not name:
        flag = _EXPORT_FLAG.get(precision, "")
        raise PrecisionError(
            f"the bundle has no {_DESCRIPTION[precision]} (manifest 'models' lacks {MODEL_OF[precision]!r}); "
            f"re-export it: slsg export RUN -o BUNDLE {flag}".rstrip())
    return name


def plan_precision(precision: str, api: ApiPlan, models: Mapping[str, str], *,
                   legacy_calibrator: bool = False, has_calibration_tensors: bool = False) -> PrecisionPlan:
    """The recipe for one engine; `models` maps precision → ONNX file name present in the bundle."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if legacy_calibrator and precision != "int8":
        raise PrecisionError("--legacy-calibrator only applies to --int8")
    if legacy_calibrator and not api.legacy_calibrator:
        raise PrecisionError(
            f"TensorRT {api.version} removed implicit INT8 calibration (IInt8EntropyCalibrator2); "
            "build --int8 without --legacy-calibrator: it uses the bundle's Q/DQ model")
    if api.strongly_typed_only:
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


# ---------------------------------------------------------------- batch profile

@dataclass(frozen=True)
class BatchProfile:
    """min/opt/max of the batch dimension. A dynamic batch gets one profile, min 1 and opt = max (the
    legacy calibrator feeds batches of the opt size); a fixed-batch graph has no choice. A DLA build is
    `single`: DLA has no dynamic dimensions, so min = opt = max and the engine runs only that batch (NVIDIA,
    "DLA Supported Layers and Restrictions": the profile's min, max and opt must be equal for wildcard
    dimensions, and the runtime dimensions must be those used for building)."""

    dynamic: bool
    max_batch: int
    single: bool = False

    @property
    def shapes(self) -> tuple[int, int, int]:
        lowest = 1 if self.dynamic and not self.single else self.max_batch
        return (lowest, self.max_batch, self.max_batch)

    @property
    def opt(self) -> int:
        return self.shapes[1]


def batch_profile(manifest: Manifest, onnx_name: str, max_batch: Optional[int], dla: bool = False) -> BatchProfile:
    """The manifest's input batch (an int when fixed, a name such as "N" when dynamic) and the asked
    --max-batch; asking a fixed-batch graph for another batch is refused, never silently ignored. For DLA the
    profile holds one batch (--max-batch, default 1)."""
    shape = manifest.input.shape if manifest.input is not None else ["N"]
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if max_batch is not None and max_batch < 1:
        raise BuildRequestError(f"--max-batch must be ≥ 1, got {max_batch}")
    if fixed is None:
        return BatchProfile(True, max_batch or 1, single=dla)
    if max_batch is not None and max_batch != fixed:
        raise BuildRequestError(
            f"{onnx_name} has a fixed batch of {fixed}, so --max-batch {max_batch} cannot apply: build with "
            f"--max-batch {fixed} (or without it), or re-export with a dynamic batch: "
            "slsg export RUN -o BUNDLE --dynamic-batch")
    return BatchProfile(False, fixed)


# ---------------------------------------------------------------- DLA and plugins

def check_dla(dla_core: Optional[int], gpu_fallback: bool, precision: str, api: ApiPlan,
              device: DeviceInfo) -> int:
    """The DLA core to build for (NO_DLA for the GPU); the device's core count is checked by the builder."""
    if dla_core is None:
        if gpu_fallback:
            raise BuildRequestError("--gpu-fallback only applies with --dla N")
        return NO_DLA
    if dla_core < 0:
        raise BuildRequestError(f"--dla takes a core index ≥ 0, got {dla_core}")
    if not api.dla:
        raise BuildRequestError(
            f"TensorRT {api.version} cannot build for DLA (10.7 was the last 10.x with DLA; 11.x restores it "
            "from 11.4.1 on Jetson AGX Orin): build for the GPU (drop --dla)")
    if not device.integrated:
        raise BuildRequestError(f"{device.name} is a discrete GPU: DLA cores exist only on Jetson "
                                "(AGX Orin, Orin NX); drop --dla")
    if precision == "fp32":
        raise BuildRequestError("DLA runs FP16 and INT8 only: build --fp16 or --int8 with --dla")
    return dla_core


def required_plugins(manifest: Manifest) -> list[str]:
    if not isinstance(manifest.plugins, list):
        raise PluginUnsupported(f"manifest 'plugins' must be a list of names, got {type(manifest.plugins).__name__}")
    return [str(p) for p in manifest.plugins]


def check_plugins(plugins: list[str], api: ApiPlan) -> None:
    """Refuse, with the way out, what this TensorRT cannot build or load."""
    unknown = [p for p in plugins if p != GRAPH_ATTENTION]
    if unknown:
        raise PluginUnsupported(f"the graph needs plugins this runtime does not provide: {unknown}")
    if plugins and not api.aot_plugins:
        raise PluginUnsupported(
            f"this bundle's graph uses the fused {GRAPH_ATTENTION} plugin, which needs TensorRT ≥ 10.9 "
            f"(ahead-of-time plugins); TensorRT {api.version} is installed. Re-export the bundle without "
            "the fused-plugin option: the standard-op graph runs on every TensorRT.")


# ---------------------------------------------------------------- the cache key

@dataclass(frozen=True)
class EngineKey:
    """Everything that makes an engine valid: a mismatch in any field means rebuild."""

    gpu_name: str
    compute_capability: str       # "8.7"
    sm_count: int                 # AGX Orin 16, Orin NX 8, Orin Nano 4–8: same name and sm_87
    memory_mib: int
    tensorrt_version: str         # tensorrt.__version__ in full, e.g. "10.3.0.30"
    precision: str                # "fp32" | "fp16" | "int8"
    variant: str                  # "plain" | "qdq" | "calib" (see PrecisionPlan.variant)
    builder_flags: tuple[str, ...]
    float_layers: tuple[str, ...]
    plugins: tuple[str, ...]
    max_batch: int
    dynamic_batch: bool
    dla_core: int                 # NO_DLA (-1): the GPU
    onnx_name: str
    onnx_sha256: str
    workspace_mb: int             # 0: TensorRT's default (all device memory); tactics depend on it
    plugin_kernel_sha256: str     # "" without the plugin: the kernel + plugin sources compiled into the engine
    triton_version: str           # "" without the plugin: the Triton that compiled the kernel's PTX
    plugin_tiles: str             # "" without the plugin: TileConfig of the compiled kernel

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("builder_flags", "float_layers", "plugins"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EngineKey:
        """ValueError/KeyError/TypeError on a sidecar that is not a key of this schema."""
        out = {}
        for f in fields(cls):
            value = d[f.name]
            if f.name in ("builder_flags", "float_layers", "plugins"):
                if not isinstance(value, list):
                    raise TypeError(f"{f.name} must be a list")
                out[f.name] = tuple(str(v) for v in value)
            elif f.name in ("sm_count", "memory_mib", "max_batch", "dla_core", "workspace_mb"):
                out[f.name] = int(value)
            elif f.name == "dynamic_batch":
                out[f.name] = bool(value)
            else:
                out[f.name] = str(value)
        return cls(**out)

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def file_stem(self) -> str:
        """`<precision>[-calib]-<gpu>-sm<cc>-trt<version>-b<max batch>[-dla<core>]-<key digest>`:
        readable, and unique per key (the digest covers every field)."""
        prec = self.precision if self.variant in ("plain", "qdq") else f"{self.precision}-{self.variant}"
        sm = self.compute_capability.replace(".", "")
        trt = re.sub(r"[^0-9a-z.]+", "-", self.tensorrt_version.lower()).strip("-")
        dla = f"-dla{self.dla_core}" if self.dla_core != NO_DLA else ""
        return f"{prec}-{gpu_slug(self.gpu_name)}-sm{sm}-trt{trt}-b{self.max_batch}{dla}-{self.digest()[:8]}"

    def mismatches(self, recorded: EngineKey) -> list[str]:
        """`field recorded ≠ wanted` for every field that differs."""
        out = []
        for f in fields(self):
            want, got = getattr(self, f.name), getattr(recorded, f.name)
            if want != got:
                out.append(f"{f.name} {got!r} ≠ {want!r}")
        return out


def gpu_slug(name: str) -> str:
    """"NVIDIA GeForce RTX 4090" → "geforce-rtx-4090"; "Orin (nvgpu)" → "orin-nvgpu"."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    s = re.sub(r"^nvidia-", "", s)
    return s[:48] or "gpu"


# ---------------------------------------------------------------- bundle + request → recipe

@dataclass(frozen=True)
class EngineRequest:
    """What a user asks for (`slsg-edge build` options that change the engine), recorded in the sidecar
    so a cached engine can be checked against what this code would build today."""

    precision: str = "fp16"
    legacy_calibrator: bool = False
    max_batch: Optional[int] = None     # None: the graph's fixed batch, or 1 for a dynamic batch
    dla_core: Optional[int] = None      # None: the GPU
    gpu_fallback: bool = False
    workspace_mb: Optional[int] = None  # None: TensorRT's default

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EngineRequest:
        def number(name: str) -> Optional[int]:
            return None if d.get(name) is None else int(d[name])

        return cls(str(d["precision"]), bool(d.get("legacy_calibrator", False)), number("max_batch"),
                   number("dla_core"), bool(d.get("gpu_fallback", False)), number("workspace_mb"))


@dataclass(frozen=True)
class Recipe:
    request: EngineRequest
    plan: PrecisionPlan
    batch: BatchProfile
    plugins: tuple[str, ...]
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
    return {prec: str(name) for prec, name in bundle.manifest.models.items() if (root / str(name)).is_file()}


def calibration_tensors(bundle: BundleLike) -> Optional[Path]:
    entry = bundle.manifest.calibration or {}
    name = entry.get(CALIBRATION_TENSORS_KEY) if isinstance(entry, dict) else None
    if not name:
        return None
    path = Path(bundle.root) / str(name)
    return path if path.is_file() else None


def onnx_sha256(manifest: Manifest, onnx_name: str) -> str:
    """The ONNX file's hash as the (already verified) manifest records it."""
    entry = manifest.files.get(onnx_name)
    if entry is None or not entry.sha256:
        raise PrecisionError(f"the bundle manifest has no sha256 for {onnx_name!r} in 'files'; re-export it")
    return entry.sha256


def make_recipe(bundle: BundleLike, request: EngineRequest, api: ApiPlan, device: DeviceInfo,
                tensorrt_version: str) -> Recipe:
    """Every decision for one engine and its key; raises the TensorRTError that says what to change."""
    plan = plan_precision(request.precision, api, bundle_models(bundle),
                          legacy_calibrator=request.legacy_calibrator,
                          has_calibration_tensors=calibration_tensors(bundle) is not None)
    dla = check_dla(request.dla_core, request.gpu_fallback, plan.precision, api, device)
    batch = batch_profile(bundle.manifest, plan.onnx_name, request.max_batch, dla != NO_DLA)
    plugins = required_plugins(bundle.manifest)
    check_plugins(plugins, api)
    flags = plan.builder_flags + (("GPU_FALLBACK",) if request.gpu_fallback else ())
    cc = f"{device.compute_capability[0]}.{device.compute_capability[1]}"
    kernel = plugin_build() if plugins else None
    key = EngineKey(device.name, cc, device.sm_count, device.memory_mib, tensorrt_version, plan.precision,
                    plan.variant, flags, plan.pinned_float_layers, tuple(plugins), batch.max_batch,
                    batch.dynamic, dla, plan.onnx_name, onnx_sha256(bundle.manifest, plan.onnx_name),
                    request.workspace_mb or 0, kernel.kernel_sha256 if kernel else "",
                    kernel.triton_version if kernel else "", kernel.tiles if kernel else "")
    return Recipe(request, plan, batch, tuple(plugins), key, Path(bundle.root) / plan.onnx_name)
