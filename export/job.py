"""What one `slsg export` holds while it runs: the options, the RUN and its data opened once, and what each step of
`export.pipeline` adds (the staged files, the gate's images, the manifest in the making, the report)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.backends.base import Outputs
from edge_runtime.manifest import Manifest
from export.onnx_export import ExportConfig
from export.parity import DEFAULT_IMAGES, ParityLimits, ParityReport
from export.run_data import RunData
from export.trt_ops import TARGETS, TrtReport

GATE_IMAGES = 100        # per kind (good, anomalous): enough for a bootstrap interval of about ±1–2 AUROC points


@dataclass
class BundleOptions:
    """Everything `slsg export` can be asked besides RUN and OUT."""

    export: ExportConfig = field(default_factory=ExportConfig)
    parity_images: Path | None = None
    parity_count: int = DEFAULT_IMAGES
    no_threshold: bool = False
    force: bool = False
    parity: ParityLimits = field(default_factory=ParityLimits)  # what a correct export looks like (recorded)
    trt_versions: tuple[str, ...] = TARGETS
    fp16: bool = False
    int8: bool = False
    bf16: bool = False
    calib_size: int | None = None
    calib_strategy: str | None = None
    calib_method: str = "minmax"
    auroc_budget: float = 0.01
    int8_fallback: int = 16              # most layers the sensitivity-ordered fallback may keep float (0: off)
    int8_backend: str = "ort"            # ort | modelopt (model.int8-s8.onnx only; int8-u8 stays ORT's)
    modelopt_python: str | None = None
    gate_images: int = GATE_IMAGES

    @property
    def asked(self) -> list[str]:
        """The extra precisions asked for, in the order the pipeline makes them."""
        return [p for p, on in (("int8", self.int8), ("fp16", self.fp16), ("bf16", self.bf16)) if on]


@dataclass
class LeftOut:
    """A precision asked for and not shipped: why, and options that may get it through next time."""

    reasons: list[str]
    next: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PrecisionReport:
    int8: dict | None = None
    fp16: dict | None = None
    bf16: dict | None = None
    openvino_int8: dict | None = None      # flavour → AccuracyReport dict of the file under OpenVINO
    left_out: dict[str, LeftOut] = field(default_factory=dict)
    thresholds: dict[str, dict] = field(default_factory=dict)
    held_out: dict[str, dict] = field(default_factory=dict)
    held_out_shift: dict | None = None     # export.thresholds.session_shift: held-out good vs validation good (FP32)
    lint: dict[str, dict] = field(default_factory=dict)
    gate: dict = field(default_factory=dict)


@dataclass
class GateSet:
    """The accuracy gate's images, shared by every precision: validation goods and anomalies, with FP32's outputs
    on them computed once (every gate compares against the same reference)."""

    eval: object          # calibration.accuracy.EvalData
    n_good: int
    n_anomalous: int
    anomalies: str        # where the anomalies come from
    reference: Outputs | None = None

    def to_dict(self) -> dict:
        return {"n_good": self.n_good, "n_anomalous": self.n_anomalous, "good": "validation split of the RUN",
                "anomalies": self.anomalies}


@dataclass
class ExportJob:
    """The state the pipeline's steps read and extend, in the order `export.pipeline.STEPS` runs them."""

    run: object                          # slsg.checkpoint.Run
    out: Path
    stage: Path                          # the bundle being assembled (moved to `out` once verified)
    tmp: Path                            # scratch for candidate graphs
    options: BundleOptions
    say: Callable[[str], None]
    threshold: dict                      # the RUN's threshold record (or the --no-threshold one)
    data: RunData | None                 # the RUN's dataset, split as training split it; None when unreachable
    deploy: object = None                # slsg.inference.DeployModel
    notes: list[str] = field(default_factory=list)
    manifest: Manifest | None = None     # begun by the graph step, completed by the others, written once by the last
    parity: ParityReport | None = None
    trt: TrtReport | None = None
    plugin_ops: list[str] = field(default_factory=list)
    gate: GateSet | None = None
    refit: object = None                 # export.gates.HeadRefit, when a gate needs the global head refitted
    models: dict[str, str] = field(default_factory=dict)   # precision → file, for every model that passed
    heads: dict[str, str] = field(default_factory=dict)    # runtime model key → refitted head file
    gate_scores: dict[str, np.ndarray] = field(default_factory=dict)  # model key → its `score` on the gate's images
    report: PrecisionReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # step name → its wall time, in order

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.run.model_config.hw)


@dataclass
class BundleResult:
    root: Path
    manifest: Manifest
    parity: ParityReport
    trt: TrtReport
    notes: list[str]
    seconds: float
    precisions: PrecisionReport | None = None   # None for the fused-plugin graph (no precisions made)
    steps: dict[str, float] = field(default_factory=dict)  # each step's wall time (export.pipeline.STEPS)

    @property
    def left_out(self) -> dict:
        """Precisions asked for and not written ({precision: LeftOut}); empty when the bundle is complete."""
        return self.precisions.left_out if self.precisions is not None else {}
