"""Bundle ONNX → TensorRT engine on this device, cached under `BUNDLE/engines/`.

Version differences live in `ApiPlan`/`PrecisionPlan`; this module only turns them into TensorRT calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from .availability import load_tensorrt
from .cache import BundleLike, EngineKey, _atomic_write, engines_dir, gpu_slug, lookup, store_engine
from .device import DeviceInfo, query_device
from .errors import BuildFailure, ParserFailure, PrecisionError
from .parser_errors import fill_node_names, format_parser_errors, issue_from_trt, onnx_node_list
from .plugins import register_plugins, required_plugins
from .precision import PrecisionPlan
from .progress import PhaseTracker, make_progress_monitor, phase_progress, spinner_progress
from .recipe import Recipe, calibration_tensors, make_recipe
from .versions import ApiPlan, api_plan


@dataclass
class BuildSettings:
    precision: str = "fp16"
    workspace_mb: int | None = None     # None: TensorRT's default (all device memory)
    max_batch: int = 1                  # optimisation profile max for a dynamic batch dimension
    legacy_calibrator: bool = False
    force: bool = False
    timing_cache: bool = True
    verbose: bool = False


@dataclass
class BuildResult:
    engine_path: Path
    key: EngineKey
    cached: bool
    reason: str
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)


def timing_cache_path(bundle_root: Path, device: DeviceInfo, api: ApiPlan) -> Path:
    """One timing cache per GPU model and TensorRT version (it is invalid elsewhere)."""
    return engines_dir(bundle_root) / f"timing-{gpu_slug(device.name)}-sm{device.sm}-trt{api.version}.cache"


def _make_logger(trt: Any, console: Console, verbose: bool) -> Any:
    """A logger that remembers errors (for the failure message) and prints warnings only when verbose."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(str(msg))
                console.print(f"TensorRT: {msg}", style="red", markup=False)
            elif verbose and severity == trt.ILogger.WARNING:
                console.print(f"TensorRT: {msg}", style="yellow", markup=False)
            elif verbose and severity == trt.ILogger.INFO:
                console.print(f"TensorRT: {msg}", style="dim", markup=False)

    return _Logger()


def _network_flags(trt: Any, api: ApiPlan, plan: PrecisionPlan) -> int:
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if api.explicit_batch_flag:
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if plan.strongly_typed and hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def _parse(trt: Any, network: Any, logger: Any, recipe: Recipe, api: ApiPlan) -> Any:
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(recipe.onnx_path)):
        return parser
    issues = [issue_from_trt(parser.get_error(i)) for i in range(parser.num_errors)]
    issues = fill_node_names(issues, onnx_node_list(str(recipe.onnx_path)))
    raise ParserFailure(format_parser_errors(issues, recipe.plan.onnx_name, str(api.version)))


def _pin_float_layers(trt: Any, network: Any, layer_types: tuple[str, ...]) -> int:
    """Keep top-k, softmax and reductions in fp32 under FP16/INT8 flags; returns how many were pinned."""
    floats = {trt.float32, trt.float16}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if str(layer.type).rsplit(".", 1)[-1] not in layer_types:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in floats:
                layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def _add_profile(trt: Any, builder: Any, network: Any, config: Any, max_batch: int) -> Any | None:
    """A dynamic batch dimension needs an optimisation profile: min 1, opt = max = max_batch."""
    profile = None
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = tuple(t.shape)
        if not any(d == -1 for d in dims):
            continue
        if any(d == -1 for d in dims[1:]):
            raise BuildFailure(f"input {t.name!r} has dynamic non-batch dims {dims}; export a fixed size")
        profile = profile or builder.create_optimization_profile()
        rest = tuple(int(d) for d in dims[1:])
        profile.set_shape(t.name, (1, *rest), (max_batch, *rest), (max_batch, *rest))
    if profile is not None:
        config.add_optimization_profile(profile)
    return profile


def _calibration_batches(path: Path, batch: int) -> Iterator[np.ndarray]:
    frames = np.load(path, allow_pickle=False)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise PrecisionError(f"{path.name} must hold uint8 N×H×W×3 BGR frames, "
                             f"got {frames.dtype}{frames.shape}")
    for start in range(0, frames.shape[0], batch):
        yield np.ascontiguousarray(frames[start:start + batch])


def _legacy_calibrator(bundle: BundleLike, recipe: Recipe, batch: int) -> Any:
    try:
        from calibration.legacy import EntropyCalibrator
    except ImportError as exc:
        raise PrecisionError(
            f"--legacy-calibrator needs the `calibration` package of slsg ({exc}); install slsg fully, "
            "or build --int8 without --legacy-calibrator to use the Q/DQ model") from exc
    tensors = calibration_tensors(bundle)
    cache = engines_dir(Path(bundle.root)) / f"calibration-{recipe.key.onnx_sha256[:8]}.cache"
    return EntropyCalibrator(_calibration_batches(tensors, batch), str(cache))


def _serialize(trt: Any, builder: Any, network: Any, config: Any, api: ApiPlan, console: Console,
               label: str) -> Any:
    if api.progress_monitor and hasattr(trt, "IProgressMonitor"):
        with phase_progress(console) as progress:
            tracker = PhaseTracker(progress)
            monitor = make_progress_monitor(trt, tracker)
            config.progress_monitor = monitor
            return builder.build_serialized_network(network, config)
    with spinner_progress(console) as progress:
        progress.add_task(f"{label} (TensorRT {api.version}: no progress report; minutes)", total=None)
        return builder.build_serialized_network(network, config)


def _load_timing_cache(config: Any, path: Path, console: Console) -> Any:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        console.print(f"[yellow]timing cache {path.name} does not fit this TensorRT/GPU; "
                      "starting a new one[/yellow]")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def build_engine(bundle: BundleLike, settings: BuildSettings, *, console: Console | None = None,
                 device: DeviceInfo | None = None) -> BuildResult:
    """Return the cached engine when it is trusted (unless `force`), else build, store and return it."""
    console = console or Console(stderr=True)
    trt = load_tensorrt()
    api = api_plan(trt.__version__)
    dev = device or query_device()
    recipe = make_recipe(bundle, settings.precision, api, dev, legacy_calibrator=settings.legacy_calibrator)
    root = Path(bundle.root)
    found = lookup(root, recipe.key)
    if found.hit and not settings.force:
        return BuildResult(found.engine_path, recipe.key, True, found.reason)
    reason = "--force" if found.hit else found.reason
    plugins = required_plugins(bundle.manifest)
    register_plugins(plugins, api)

    logger = _make_logger(trt, console, settings.verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, api, recipe.plan))
    _parse(trt, network, logger, recipe, api)
    config = builder.create_builder_config()
    if settings.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_mb) << 20)
    for flag in recipe.plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    pinned = _pin_float_layers(trt, network, recipe.plan.pinned_float_layers)
    profile = _add_profile(trt, builder, network, config, settings.max_batch)
    if recipe.plan.legacy_calibrator:
        config.int8_calibrator = _legacy_calibrator(bundle, recipe, settings.max_batch)
        if profile is not None:
            config.set_calibration_profile(profile)
    tc_path = timing_cache_path(root, dev, api)
    timing = _load_timing_cache(config, tc_path, console) if settings.timing_cache else None

    t0 = time.perf_counter()
    serialized = _serialize(trt, builder, network, config, api, console,
                            f"building {recipe.key.file_stem()}")
    seconds = time.perf_counter() - t0
    if serialized is None:
        said = "; ".join(logger.errors[-3:]) or "no error was logged"
        raise BuildFailure(f"TensorRT {api.version} built no engine from {recipe.plan.onnx_name} ({said}). "
                           "Run again with --verbose for the builder log, or give it more --workspace-mb.")
    if timing is not None:
        tc_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(tc_path, bytes(config.get_timing_cache().serialize()))
    record = {
        "plan": asdict(recipe.plan), "workspace_mb": settings.workspace_mb, "max_batch": settings.max_batch,
        "pinned_float_layers": pinned, "plugins": plugins, "seconds": round(seconds, 2),
        "api": api.to_dict(), "device": dev.to_dict(), "timing_cache": tc_path.name if timing else None,
    }
    path = store_engine(root, recipe.key, bytes(serialized), record)
    return BuildResult(path, recipe.key, False, reason, seconds, record)
