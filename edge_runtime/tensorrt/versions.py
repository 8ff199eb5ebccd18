"""TensorRT version → which API to call. Pure: every branch is tested without TensorRT.

Facts (DESIGN.md): JetPack 5.1 = 8.5, 6.0 = 8.6, 6.1/6.2 = 10.3; TensorRT 11 is strongly typed only
(no FP16/INT8 builder flags, no implicit INT8 calibrator). The tensor-name API exists from 8.5;
`execute_async_v2` was removed in 10.0. Python plugins from 10.6, ahead-of-time plugins from 10.9.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .errors import UnsupportedTensorRT

_VERSION_RE = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")


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

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


MIN_SUPPORTED = TrtVersion(8, 5)


@dataclass(frozen=True)
class ApiPlan:
    """The calls a given TensorRT wants; the builder and backend branch on these fields only."""

    version: TrtVersion
    explicit_batch_flag: bool       # pass NetworkDefinitionCreationFlag.EXPLICIT_BATCH (8.x; default from 10)
    strongly_typed_flag: bool       # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists (≥ 10)
    strongly_typed_only: bool       # no FP16/INT8 builder flags at all (≥ 11)
    precision_flags: bool           # BuilderFlag.FP16 / INT8 / PREFER_PRECISION_CONSTRAINTS usable (≤ 10)
    execute: str                    # "v3" (≥ 10) or "v2" (8.x)
    tensor_address_api: bool        # set_tensor_address / set_input_shape / get_tensor_* (≥ 8.5)
    legacy_calibrator: bool         # IInt8EntropyCalibrator2 (≤ 10)
    python_plugins: bool            # tensorrt.plugin decorators (≥ 10.6), need Python at run time
    aot_plugins: bool               # ahead-of-time plugins, no Python at run time (≥ 10.9)
    memory_pool_api: str            # "set_memory_pool_limit" (≥ 8.4)
    progress_monitor: bool          # IProgressMonitor usable from Python (≥ 10)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["version"] = str(self.version)
        return d


def api_plan(version: TrtVersion | str) -> ApiPlan:
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
        precision_flags=not eleven,
        execute="v3" if ten else "v2",
        tensor_address_api=True,
        legacy_calibrator=not eleven,
        python_plugins=v.at_least(10, 6),
        aot_plugins=v.at_least(10, 9),
        memory_pool_api="set_memory_pool_limit",
        progress_monitor=ten,
    )
