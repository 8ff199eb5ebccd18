"""Bundle ONNX → TensorRT engine on this device, cached under `BUNDLE/engines/`.

Every decision is made in `recipe` (pure); this module only turns the recipe into TensorRT calls, reports
progress and parser failures, and stores the result with `cache`. Version differences are `ApiPlan` fields.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edge_runtime.optional import available, onnx

from .cache import (
    Target,
    atomic_write,
    calibration_cache_path,
    current_target,
    lookup,
    store_engine,
    timing_cache_path,
)
from .calibrator import CalibratorCore, calibration_dtype, entropy_calibrator, load_calibration_frames
from .cuda import open_cuda
from .errors import BuildFailure, BuildRequestError, ParserFailure, PluginUnsupported
from .recipe import NO_DLA, BundleLike, EngineKey, EngineRequest, Recipe, calibration_tensors, make_recipe
from .versions import TOPK_MAX_K, ApiPlan, load_tensorrt

PLUGIN_MODULE = "edge_runtime.kernels.trt_plugin"


@dataclass
class BuildSettings:
    precision: str = "fp16"
    workspace_mb: Optional[int] = None   # None: TensorRT's default (all device memory)
    max_batch: Optional[int] = None      # None: the graph's fixed batch, or 1 when it is dynamic
    legacy_calibrator: bool = False
    dla_core: Optional[int] = None       # None: the GPU
    gpu_fallback: bool = False           # layers DLA cannot run go to the GPU
    force: bool = False
    timing_cache: bool = True
    verbose: bool = False

    def request(self) -> EngineRequest:
        return EngineRequest(self.precision, self.legacy_calibrator, self.max_batch, self.dla_core,
                             self.gpu_fallback, self.workspace_mb)


@dataclass
class BuildResult:
    engine_path: Path
    key: EngineKey
    cached: bool
    reason: str
    seconds: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- logging and progress

# ---------------------------------------------------------------- where a DLA engine's layers run

DLA_REPORT_HEADERS = ("layers running on dla", "layers running on gpu")
#: The tags of TensorRT's builder report of a DLA build, logged one line per message under the headers
#: "Layers running on DLA:" and "Layers running on GPU:" (NVIDIA/TensorRT samples/sampleCudla/README.md).
DLA_REPORT_TAGS = {"[DlaLayer]": "dla", "[GpuLayer]": "gpu"}


@dataclass(frozen=True)
class LayerPlacement:
    """Where the layers of a DLA engine run. `source` says how it is known: "builder report" (what TensorRT
    placed) or "can_run_on_DLA" (asked per network layer when the builder logged no report)."""

    source: str
    dla: tuple[str, ...]
    gpu: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"source": self.source, "dla": list(self.dla), "gpu": list(self.gpu)}


class PlacementLog:
    """Collects the DLA/GPU layer report from the builder's log messages (any severity, any thread)."""

    def __init__(self) -> None:
        self.seen = False
        self.layers: dict[str, list[str]] = {"dla": [], "gpu": []}

    def feed(self, msg: str) -> None:
        for line in str(msg).splitlines():
            text = line.strip()
            if any(h in text.lower() for h in DLA_REPORT_HEADERS):
                self.seen = True
                continue
            for tag, where in DLA_REPORT_TAGS.items():
                if self.seen and text.startswith(tag):
                    self.layers[where].append(text[len(tag):].strip().rstrip(","))

    def placement(self) -> Optional[LayerPlacement]:
        if not self.seen:
            return None
        return LayerPlacement("builder report", tuple(self.layers["dla"]), tuple(self.layers["gpu"]))


def dla_capability(config: Any, network: Any) -> LayerPlacement:
    """`IBuilderConfig.can_run_on_DLA` per network layer: where TensorRT can place each one."""
    where: dict[str, list[str]] = {"dla": [], "gpu": []}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = str(layer.type).rsplit(".", 1)[-1]
        where["dla" if config.can_run_on_DLA(layer) else "gpu"].append(f"{kind}: {layer.name}")
    return LayerPlacement("can_run_on_DLA", tuple(where["dla"]), tuple(where["gpu"]))


def _make_logger(trt: Any, console: Console, verbose: bool) -> Any:
    """A logger that remembers errors (for the failure message) and the DLA placement report, and prints
    warnings only when verbose."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.placement = PlacementLog()

        def log(self, severity: Any, msg: str) -> None:
            self.placement.feed(msg)
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(str(msg))
                console.print(f"TensorRT: {msg}", style="red", markup=False)
            elif verbose and severity == trt.ILogger.WARNING:
                console.print(f"TensorRT: {msg}", style="yellow", markup=False)
            elif verbose and severity == trt.ILogger.INFO:
                console.print(f"TensorRT: {msg}", style="dim", markup=False)

    return _Logger()


class PhaseTracker:
    """Maps TensorRT phase events onto progress tasks; thread-safe (TensorRT calls from its threads)."""

    def __init__(self, progress: Any):
        self._progress = progress
        self._tasks: dict[str, Any] = {}
        self._depth: dict[str, int] = {}
        self._lock = threading.Lock()
        self.cancel = False

    def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
        with self._lock:
            depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._depth[phase_name] = depth
            label = "  " * depth + phase_name
            self._tasks[phase_name] = self._progress.add_task(label, total=max(1, num_steps))

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock:
            task = self._tasks.get(phase_name)
            if task is not None:
                self._progress.update(task, completed=step + 1)
            return not self.cancel

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            task = self._tasks.pop(phase_name, None)
            self._depth.pop(phase_name, None)
            if task is not None:
                self._progress.remove_task(task)


def make_progress_monitor(trt: Any, tracker: PhaseTracker) -> Any:
    """An IProgressMonitor subclass instance delegating to `tracker` (the class needs tensorrt ≥ 10)."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            tracker.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return tracker.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            tracker.phase_finish(phase_name)

    return _Monitor()


def _phase_progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=True)


def _spinner_progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, transient=True)


# ---------------------------------------------------------------- parser failures

@dataclass(frozen=True)
class ParserIssue:
    code: str
    desc: str
    node_index: int            # -1 when the error is not about one node
    node_name: str
    node_op: str


def _call(obj: Any, attr: str, default: Any) -> Any:
    fn = getattr(obj, attr, None)
    if fn is None:
        return default
    try:
        return fn() if callable(fn) else fn
    except Exception:  # accessor absent in this TensorRT's binding: keep what we have
        return default


def issue_from_trt(err: Any, api: ApiPlan) -> ParserIssue:
    """node_name()/node_operator() are bound from TensorRT 10 on; 8.x gives only the node index."""
    named = api.parser_node_names
    return ParserIssue(code=str(_call(err, "code", "?")).rsplit(".", 1)[-1],
                       desc=str(_call(err, "desc", err)),
                       node_index=int(_call(err, "node", -1)),
                       node_name=str(_call(err, "node_name", "") or "") if named else "",
                       node_op=str(_call(err, "node_operator", "") or "") if named else "")


def fill_node_names(issues: Sequence[ParserIssue], nodes: Sequence[tuple[str, str]]) -> list[ParserIssue]:
    """Fill missing names/ops from the graph's (name, op_type) node list."""
    out = []
    for i in issues:
        if (not i.node_name or not i.node_op) and 0 <= i.node_index < len(nodes):
            name, op = nodes[i.node_index]
            i = ParserIssue(i.code, i.desc, i.node_index, i.node_name or name, i.node_op or op)
        out.append(i)
    return out


def onnx_node_list(onnx_path: str) -> list[tuple[str, str]]:
    """(name, op_type) per node when the `onnx` package is installed (it is optional in the runtime)."""
    if not available("onnx"):
        return []
    graph = onnx.load(onnx_path, load_external_data=False).graph
    return [(n.name, n.op_type) for n in graph.node]


_QDQ_HINT = "TensorRT wants symmetric INT8 Q/DQ (zero point 0): model.int8-s8.onnx, not model.int8-u8.onnx"
GENERIC_HINT = ("inspect the graph with `polygraphy inspect model FILE` and compare backends with "
                "`polygraphy run FILE --trt --onnxrt`; a newer TensorRT may support the op")


def op_hint(op: str, api: ApiPlan) -> Optional[str]:
    if op == "TopK":
        if api.topk_constant_k:
            return (f"TensorRT {api.version} needs TopK's K as a constant initializer and K ≤ {TOPK_MAX_K}; "
                    "re-export with a fixed image size")
        return f"TensorRT's TopK takes K ≤ {TOPK_MAX_K}; re-export with a smaller image or top-k"
    return {
        "GraphAttention": "the fused plugin op needs TensorRT ≥ 10.9 and edge_runtime.kernels.trt_plugin",
        "Cast": "TensorRT 8.5 limits UINT8 to network inputs cast to float; TensorRT ≥ 8.6 is more lenient",
        "QuantizeLinear": _QDQ_HINT,
        "DequantizeLinear": _QDQ_HINT,
        "Resize": "TensorRT supports Resize with constant scales/sizes; re-export with a fixed image size",
    }.get(op)


def format_parser_errors(issues: Sequence[ParserIssue], onnx_name: str, api: ApiPlan) -> str:
    lines = [f"TensorRT {api.version} could not parse {onnx_name} ({len(issues)} error(s)):"]
    hints: list[str] = []
    for i in issues:
        where = f"node #{i.node_index}" if i.node_index >= 0 else "graph"
        if i.node_name:
            where += f" {i.node_name!r}"
        if i.node_op:
            where += f" (op {i.node_op})"
        lines.append(f"  • {where}: [{i.code}] {i.desc}")
        hint = op_hint(i.node_op, api)
        if hint and hint not in hints:
            hints.append(hint)
    hints.append(GENERIC_HINT)
    return "\n".join(lines + [f"Hint: {h}" for h in hints])


# ---------------------------------------------------------------- the steps of a build

def register_plugins(plugins: Sequence[str]) -> None:
    """Register the fused plugin before parsing (build time only: an AOT engine needs no Python to run)."""
    if not plugins:
        return
    try:
        module = importlib.import_module(PLUGIN_MODULE)
        module.register_plugin()
    except ImportError as exc:
        raise PluginUnsupported(
            f"building this bundle compiles its fused plugin with Triton, which could not be imported "
            f"({exc}); pip install 'slsg[kernels]' on the build machine, or re-export without the "
            "fused-plugin option") from exc
    except RuntimeError as exc:  # trt_plugin.PluginUnavailableError: TensorRT or tensorrt.plugin too old
        raise PluginUnsupported(str(exc)) from exc


def _network_flags(trt: Any, api: ApiPlan, recipe: Recipe) -> int:
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if api.explicit_batch_flag:
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if recipe.plan.strongly_typed and api.strongly_typed_flag:
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def _parse(trt: Any, network: Any, logger: Any, recipe: Recipe, api: ApiPlan) -> Any:
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(recipe.onnx_path)):
        return parser
    issues = [issue_from_trt(parser.get_error(i), api) for i in range(parser.num_errors)]
    issues = fill_node_names(issues, onnx_node_list(str(recipe.onnx_path)))
    raise ParserFailure(format_parser_errors(issues, recipe.plan.onnx_name, api))


def _check_network_batch(network: Any, recipe: Recipe) -> list[Any]:
    """The parsed inputs must have the batch the manifest promised (the key was made from it)."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for t in inputs:
        dims = tuple(int(d) for d in t.shape)
        if any(d == -1 for d in dims[1:]):
            raise BuildFailure(f"input {t.name!r} has dynamic non-batch dims {dims}; export a fixed size")
        if recipe.batch.dynamic != (dims[0] == -1) or (not recipe.batch.dynamic and dims[0] != recipe.batch.max_batch):
            said = "a dynamic batch" if recipe.batch.dynamic else f"a fixed batch of {recipe.batch.max_batch}"
            raise BuildFailure(f"{recipe.plan.onnx_name} input {t.name!r} is {dims} but the manifest says "
                               f"{said}; the bundle is inconsistent: re-export it")
    return inputs


def _pin_float_layers(trt: Any, network: Any, layer_types: tuple[str, ...]) -> int:
    """Keep top-k, softmax and reductions in fp32 under FP16/INT8 flags; returns how many were pinned."""
    if not layer_types:
        return 0
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


def _add_profile(builder: Any, config: Any, inputs: list[Any], recipe: Recipe) -> Optional[Any]:
    """A dynamic batch needs an optimisation profile: the recipe's (min 1, or the one batch for DLA)."""
    if not recipe.batch.dynamic:
        return None
    profile = builder.create_optimization_profile()
    lo, opt, hi = recipe.batch.shapes
    for t in inputs:
        rest = tuple(int(d) for d in tuple(t.shape)[1:])
        profile.set_shape(t.name, (lo, *rest), (opt, *rest), (hi, *rest))
    config.add_optimization_profile(profile)
    return profile


def _set_flags(trt: Any, config: Any, key: EngineKey, api: ApiPlan) -> None:
    for name in key.builder_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise BuildFailure(f"TensorRT {api.version} has no BuilderFlag.{name}; this recipe does not fit it")
        config.set_flag(flag)


def _configure_dla(trt: Any, builder: Any, config: Any, key: EngineKey) -> None:
    if key.dla_core == NO_DLA:
        return
    cores = int(builder.num_DLA_cores)
    if key.dla_core >= cores:
        have = f"DLA cores 0–{cores - 1}" if cores else "no DLA core"
        raise BuildRequestError(f"--dla {key.dla_core}: this device has {have} (AGX Orin and Orin NX have "
                                "two, Orin Nano none); build for the GPU or another core")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = key.dla_core


@contextlib.contextmanager
def _calibrator(trt: Any, bundle: BundleLike, recipe: Recipe, config: Any, profile: Optional[Any],
                cuda: Any, image: Any) -> Iterator[Optional[str]]:
    """Attach the legacy calibrator for the build and free its device buffer after; yields the cache name.
    The buffer holds the opt batch in the type TensorRT reads for the `image` input (float32 for uint8)."""
    if not recipe.plan.legacy_calibrator:
        yield None
        return
    tensors = calibration_tensors(bundle)
    if tensors is None:
        raise BuildRequestError("the bundle's calibration tensors went missing; re-export with --int8")
    frames = load_calibration_frames(tensors)
    batch = recipe.batch.opt
    dtype = calibration_dtype(str(image.dtype))
    buffer = cuda.allocate((batch, *frames.shape[1:]), dtype, False)

    def copy_to_device(host_batch: Any) -> int:
        buffer.host[...] = host_batch
        cuda.to_device(buffer)
        cuda.synchronize()
        return buffer.device_ptr

    cache = calibration_cache_path(Path(bundle.root), recipe.key, batch)
    core = CalibratorCore(frames, cache, batch, copy_to_device, dtype)
    config.int8_calibrator = entropy_calibrator(trt, core)
    if profile is not None:
        config.set_calibration_profile(profile)
    try:
        yield cache.name
    finally:
        config.int8_calibrator = None


def _load_timing_cache(config: Any, path: Path, console: Console) -> Any:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        console.print(f"[yellow]timing cache {path.name} does not fit this TensorRT/GPU; "
                      "starting a new one[/yellow]")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _dla_placement(logger: Any, config: Any, network: Any, key: EngineKey,
                   console: Console) -> Optional[LayerPlacement]:
    """For a DLA build: the builder's report, else can_run_on_DLA per layer; warns when nothing runs on DLA."""
    if key.dla_core == NO_DLA:
        return None
    placement = logger.placement.placement() or dla_capability(config, network)
    if not placement.dla:
        console.print(f"[yellow]no layer runs on DLA core {key.dla_core}: TensorRT placed all "
                      f"{len(placement.gpu)} on the GPU ({placement.source})[/yellow]")
    return placement


def _serialize(trt: Any, builder: Any, network: Any, config: Any, api: ApiPlan, console: Console,
               label: str) -> Any:
    if api.progress_monitor:
        with _phase_progress(console) as progress:
            config.progress_monitor = make_progress_monitor(trt, PhaseTracker(progress))
            try:
                return builder.build_serialized_network(network, config)
            finally:
                config.progress_monitor = None
    with _spinner_progress(console) as progress:
        progress.add_task(f"{label} (TensorRT {api.version}: no progress report; minutes)", total=None)
        return builder.build_serialized_network(network, config)


def _build(trt: Any, bundle: BundleLike, recipe: Recipe, settings: BuildSettings, target: Target,
           console: Console, cuda: Any) -> tuple[bytes, dict[str, Any]]:
    api, root = target.api, Path(bundle.root)
    register_plugins(recipe.plugins)
    logger = _make_logger(trt, console, settings.verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, api, recipe))
    parser = _parse(trt, network, logger, recipe, api)   # kept alive with the network until the build ends
    inputs = _check_network_batch(network, recipe)
    config = builder.create_builder_config()
    if recipe.key.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, recipe.key.workspace_mb << 20)
    _set_flags(trt, config, recipe.key, api)
    _configure_dla(trt, builder, config, recipe.key)
    pinned = _pin_float_layers(trt, network, recipe.key.float_layers)
    profile = _add_profile(builder, config, inputs, recipe)
    tc_path = timing_cache_path(root, target.device, target.tensorrt_version)
    timing = _load_timing_cache(config, tc_path, console) if settings.timing_cache else None
    with _calibrator(trt, bundle, recipe, config, profile, cuda, inputs[0]) as calibration_cache:
        t0 = time.perf_counter()
        serialized = _serialize(trt, builder, network, config, api, console, f"building {recipe.key.file_stem()}")
        seconds = time.perf_counter() - t0
    del parser
    if serialized is None:
        said = "; ".join(logger.errors[-3:]) or "no error was logged"
        raise BuildFailure(f"TensorRT {api.version} built no engine from {recipe.plan.onnx_name} ({said}). "
                           "Run again with --verbose for the builder log, or give it more --workspace-mb.")
    if timing is not None:
        atomic_write(tc_path, bytes(config.get_timing_cache().serialize()))
    placement = _dla_placement(logger, config, network, recipe.key, console)
    record = {"plan": asdict(recipe.plan), "batch_profile": list(recipe.batch.shapes),
              "layer_placement": placement.to_dict() if placement else None,
              "pinned_float_layers": pinned, "seconds": round(seconds, 2),
              "api": api.to_dict(), "device": target.device.to_dict(),
              "timing_cache": tc_path.name if timing is not None else None, "calibration_cache": calibration_cache}
    return bytes(serialized), record


def build_engine(bundle: BundleLike, settings: BuildSettings, *, console: Optional[Console] = None,
                 target: Optional[Target] = None) -> BuildResult:
    """Return the cached engine when it is trusted (unless `force`), else build, store and return it."""
    console = console or Console(stderr=True)
    trt = load_tensorrt()
    target = target or current_target()
    recipe = make_recipe(bundle, settings.request(), target.api, target.device, target.tensorrt_version)
    root = Path(bundle.root)
    found = lookup(root, recipe.key)
    if found.hit and not settings.force:
        return BuildResult(found.engine_path, recipe.key, True, found.reason)
    reason = "--force" if found.hit else found.reason
    cuda = open_cuda(target.device.index)
    try:
        with cuda.activate():
            data, record = _build(trt, bundle, recipe, settings, target, console, cuda)
    finally:
        cuda.close()
    path = store_engine(root, recipe, data, record)
    return BuildResult(path, recipe.key, False, reason, float(record["seconds"]), record)
