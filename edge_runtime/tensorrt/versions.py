"""Which TensorRT is installed here, and what each version offers. Pure except `load_tensorrt`.

Every version fact the builder and backend branch on is one `ApiPlan` field, set in `api_plan` from the
sources named there (docs/tensorrt.md has the version × feature table with the same sources). Nothing
here imports `tensorrt` at import time: the backend selector asks `tensorrt_available()` cheaply.

`tensorrt-stubs` makes `import tensorrt` succeed as an empty package, so presence is decided by a real
attribute (`trt.Builder`), never by the import alone.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Optional, Union

from .errors import TensorRTMissing, UnsupportedTensorRT

_VERSION_RE = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")

INSTALL_HINT = (
    "How to get it:\n"
    "  • Jetson: TensorRT comes with JetPack (5.1 → 8.5, 6.0 → 8.6, 6.1/6.2 → 10.3).\n"
    "    If Python cannot see it:\n"
    "      sudo apt install python3-libnvinfer python3-libnvinfer-dev\n"
    "    and use the system Python 3 (or a venv made with --system-site-packages).\n"
    "  • Desktop/server GPU (x86_64 or SBSA): pip install tensorrt cuda-python\n"
    "    (or pip install 'slsg[tensorrt]'); a CUDA driver must be installed.\n"
    "Without TensorRT the ONNX Runtime backend still runs: slsg-edge run --bundle BUNDLE ..."
)


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0
    build: int = 0

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """"8.5.2.2", "10.3.0", "11.0.0.114", "10.9.0.34+cuda12" → TrtVersion."""
        m = _VERSION_RE.match(str(text))
        if m is None:
            raise ValueError(f"not a TensorRT version: {text!r} (expected MAJOR.MINOR[.PATCH[.BUILD]])")
        return cls(*(int(g) if g is not None else 0 for g in m.groups()))

    def at_least(self, major: int, minor: int = 0, patch: int = 0) -> bool:
        return (self.major, self.minor, self.patch) >= (major, minor, patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


MIN_SUPPORTED = TrtVersion(8, 5)
#: ITopKLayer k limit, every supported version: TensorRT operator reference "TopK" (k ≤ 3840) and the
#: onnx-tensorrt operator table from 10.1 ("K input must be less than 3840").
TOPK_MAX_K = 3840


@dataclass(frozen=True)
class ApiPlan:
    """The calls a given TensorRT wants; the builder and backend branch on these fields only."""

    version: TrtVersion
    explicit_batch_flag: bool   # NetworkDefinitionCreationFlag.EXPLICIT_BATCH needed (8.x; no-op in 10, gone in 11)
    strongly_typed_flag: bool   # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists (≥ 10; ignored in 11)
    strongly_typed_only: bool   # no FP16/INT8/PREFER_PRECISION_CONSTRAINTS builder flags (≥ 11)
    execute: str                # "v2" (8.x, with bindings) or "v3" (≥ 10: execute_async_v2 was removed)
    legacy_calibrator: bool     # IInt8EntropyCalibrator2 + config.int8_calibrator (≤ 10)
    aot_plugins: bool           # tensorrt.plugin.aot_impl: no Python at run time (≥ 10.9)
    progress_monitor: bool      # IProgressMonitor / config.progress_monitor (≥ 10)
    dla: bool                   # DLA builds: 8.5–10.7, and 11.4.1+ on AGX Orin (none in 10.8–11.4.0)
    parser_node_names: bool     # IParserError.node_name()/node_operator() (≥ 10; 8.x gives the index only)
    topk_constant_k: bool       # TopK's K must be an initializer (8.5); a tensor from 8.6

    def to_dict(self) -> dict:
        d = asdict(self)
        d["version"] = str(self.version)
        return d


def api_plan(version: Union[TrtVersion, str]) -> ApiPlan:
    """Sources per field: the pybind definitions in NVIDIA/TensorRT `python/src/infer/pyCore.cpp` and
    `pyInt8.cpp` at release/8.5, v8.6.1, v10.3.0, v10.16, v11.1 (which methods/flags are bound); the
    TensorRT 11 Python migration guide (removed weak-typing flags, calibrator); "Working with DLA" 11.4.1
    (DLA unavailable 11.0–11.4.0, 10.7 last 10.x with DLA); `tensorrt/plugin/_validate.py` (aot_impl from
    10.9); onnx-tensorrt docs/operators.md at 8.5-GA (TopK K must be an initializer)."""
    v = TrtVersion.parse(version) if isinstance(version, str) else version
    if v < MIN_SUPPORTED:
        raise UnsupportedTensorRT(
            f"TensorRT {v} is too old: slsg-edge needs TensorRT ≥ {MIN_SUPPORTED} (JetPack 5.1 or newer). "
            "Upgrade JetPack, or use the ONNX Runtime backend.")
    ten = v.at_least(10)
    eleven = v.at_least(11)
    return ApiPlan(
        version=v,
        explicit_batch_flag=not ten,
        strongly_typed_flag=ten,
        strongly_typed_only=eleven,
        execute="v3" if ten else "v2",
        legacy_calibrator=not eleven,
        aot_plugins=v.at_least(10, 9),
        progress_monitor=ten,
        dla=(not v.at_least(10, 8)) or v.at_least(11, 4, 1),
        parser_node_names=ten,
        topk_constant_k=not v.at_least(8, 6),
    )


# ---------------------------------------------------------------- is TensorRT importable here?

def probe_tensorrt() -> tuple[Optional[ModuleType], str]:
    """(module, "") when TensorRT is real, else (None, why not). Not cached: tests call it directly."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:  # not installed, or libnvinfer missing underneath
        return None, f"`import tensorrt` failed: {exc}"
    except OSError as exc:  # shared library found but unloadable
        return None, f"TensorRT's libraries could not be loaded: {exc}"
    if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
        where = getattr(trt, "__file__", None) or "a namespace package"
        return None, (f"`import tensorrt` finds {where}, which has no `tensorrt.Builder` "
                      "(a stub package such as tensorrt-stubs, not TensorRT)")
    return trt, ""


@functools.lru_cache(maxsize=1)
def _cached_probe() -> tuple[Optional[ModuleType], str]:
    return probe_tensorrt()


def tensorrt_available() -> bool:
    """True only when a real TensorRT Python package imports (cheap after the first call)."""
    return _cached_probe()[0] is not None


def missing_message(reason: str) -> str:
    return f"TensorRT is not available on this machine: {reason}.\n{INSTALL_HINT}"


def load_tensorrt() -> ModuleType:
    """The tensorrt module, or TensorRTMissing with the reason and how to install it."""
    trt, reason = _cached_probe()
    if trt is None:
        raise TensorRTMissing(missing_message(reason))
    return trt


def installed_version() -> TrtVersion:
    return TrtVersion.parse(load_tensorrt().__version__)
