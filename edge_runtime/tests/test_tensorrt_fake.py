"""The fakes of NVIDIA's bindings hold the rules they cite: one test per rule, so a change to a fake that drops a
rule fails here (the rules and their sources: `PLUGIN_RULES` in fakes/tensorrt_plugin.py, `RULES` in
fakes/tensorrt.py). No `from __future__ import annotations`: `tensorrt.plugin` reads real annotation objects."""

import contextlib
import json
import warnings
from pathlib import Path
from typing import Tuple, Union  # noqa: UP035 (the plugin functions' annotations are read at registration)

import numpy as np
import pytest

from edge_runtime.tests.fakes.cudart import cudaError_t, make_cudart, make_utils
from edge_runtime.tests.fakes.gpu import FakeGpu
from edge_runtime.tests.fakes.tensorrt import RELEASES, RULES, PureVirtualCall, _override, make_tensorrt
from edge_runtime.tests.fakes.tensorrt_plugin import (
    PLUGIN_RULES,
    DimExpr,
    ExprBuilder,
    PluginBuildError,
    PluginInput,
    build_aot_plugin,
)
from edge_runtime.tests.trt_bundles import H, W, heads_model


@pytest.fixture
def trt():
    return make_tensorrt(RELEASES["10.16"], FakeGpu())


@contextlib.contextmanager
def shape_context(trtp):
    """What TensorRT's get_output_shapes / get_launch_params set up around a plugin call."""
    trtp.SymIntExpr._exprBuilder = ExprBuilder()
    try:
        yield
    finally:
        trtp.SymIntExpr._exprBuilder = None


def _toy(trt, seen: list, *, positions=(0, 1), extra_is_sym_int32=True, tune_raises=False) -> None:
    """A one-input plugin "toy::Add" whose functions record what TensorRT hands them."""
    trtp = trt.plugin

    @trtp.register("toy::Add")
    def _desc(x: trtp.TensorDesc, block: int) -> trtp.TensorDesc:
        seen.append(("register", x.shape_expr[0].is_fake))
        return x.like()

    @trtp.autotune("toy::Add")
    def _tune(x, outputs):
        seen.append(("autotune", x.shape))
        if tune_raises:
            raise KeyError("no")
        combination = trtp.AutoTuneCombination()
        combination.pos(list(positions), "FP32")
        return [combination]

    @trtp.aot_impl("toy::Add")
    def _impl(x, block: int, outputs, tactic) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:  # noqa: E501, UP006, UP007
        seen.append(("aot_impl", block, len(outputs), tactic))
        params = trtp.KernelLaunchParams()
        params.grid_x = trtp.cdiv(x.shape_expr[0], block)
        params.block_x = 128
        n = trtp.SymInt32(x.shape_expr[0]) if extra_is_sym_int32 else 64   # from_tuple makes 64 a SymIntExpr
        return "toy_kernel", "// ptx", params, trtp.SymIntExprs.from_tuple([n])


def _build(trt, opt_batch: int = 4) -> dict:
    return build_aot_plugin(trt.plugin, trt._registry["toy::Add"], {"block": 32},
                            [PluginInput("x", (-1, 64), trt.float32)], opt_batch)


def test_every_plugin_rule_has_its_test():
    for key in PLUGIN_RULES:
        assert f"test_plugin_rule_{key.replace('-', '_')}" in globals(), key


def test_plugin_rule_pos_iterable(trt):
    combination = trt.plugin.AutoTuneCombination()
    with pytest.raises(TypeError, match="not iterable"):
        combination.pos(3, "FP32")
    combination.pos([3], "FP32")
    assert combination.io_types == [None, None, None, "FP32"]
    consumed = trt.plugin.AutoTuneCombination()
    consumed.pos(iter([0]), "FP32")                # max() used the iterator up: nothing was set
    assert consumed.io_types == [None]


def test_plugin_rule_pos_once(trt):
    combination = trt.plugin.AutoTuneCombination()
    combination.pos([0, 1], "FP32")
    with pytest.raises(ValueError, match="position 1 already specified"):
        combination.pos([1], "FP16")


def test_plugin_rule_combinations(trt):
    combination = trt.plugin.AutoTuneCombination()
    combination.pos([0, 1], "FP32|FP16")
    combination.pos([2], "INT32*INT8")
    types = sorted(tuple(t.name for t in c[0]) for c in combination._get_combinations())
    assert types == sorted([("FLOAT", "FLOAT", "INT32"), ("HALF", "HALF", "INT32"), ("FLOAT", "FLOAT", "INT8"),
                            ("HALF", "HALF", "INT8")])
    unset = trt.plugin.AutoTuneCombination()
    unset.pos([1], "FP32")                         # position 0 left unset: generating combinations fails
    with pytest.raises(AttributeError):
        unset._get_combinations()


def test_plugin_rule_exception_is_failure(trt):
    _toy(trt, [], tune_raises=True)
    with pytest.raises(PluginBuildError, match="get_supported_format_combinations.*KeyError"):
        _build(trt)


def test_plugin_rule_register_twice(trt):
    seen: list = []
    _toy(trt, seen)
    _build(trt)
    assert [s for s in seen if s[0] == "register"] == [("register", True), ("register", False)]
    assert [s[0] for s in seen] == ["register", "register", "autotune", "autotune", "aot_impl"]
    assert ("autotune", (4, 64)) in seen            # autotune sees concrete shapes at the profile's opt batch


def test_plugin_rule_dummy_not_constant(trt):
    dummy = trt.plugin.ShapeExprs(2, _is_dummy=True)[0]
    assert dummy.is_fake
    with pytest.raises(RuntimeError, match="fake"):
        dummy.is_constant  # noqa: B018
    assert (dummy + 1).is_fake                     # arithmetic on a fake stays fake


def test_plugin_rule_symbolic(trt):
    trtp = trt.plugin
    with shape_context(trtp):
        batch = trtp.ShapeExpr(DimExpr("B"))
        total = batch * 64 + 1
        assert isinstance(total, trtp.ShapeExpr) and total._expr.text == "sum(prod(B, 64), 1)"
        assert not total.is_constant
        assert isinstance(batch == 4, trtp.SymIntExpr)          # a comparison is an expression
        assert (trtp.ShapeExpr(48) * 2).constant_value() == 96  # constants fold


def test_plugin_rule_no_bool(trt):
    trtp = trt.plugin
    with shape_context(trtp):
        with pytest.raises(RuntimeError, match="boolean"):
            bool(trtp.ShapeExpr(DimExpr("B")))
        assert bool(trtp.ShapeExpr(3)) is True


def test_plugin_rule_builder_scoped(trt):
    trtp = trt.plugin
    assert trtp.SymInt32(5)._expr is None            # no builder outside a shape context: no expression
    assert trtp.ShapeExpr(5).is_fake
    with pytest.raises(AttributeError):
        trtp.ShapeExpr(DimExpr("B")) + 1
    _toy(trt, [])
    _build(trt)
    assert trtp.SymIntExpr._exprBuilder is None


def test_plugin_rule_cdiv(trt):
    trtp = trt.plugin
    with pytest.raises(ValueError, match="Both arguments cannot be 'int's"):
        trtp.cdiv(48, 32)
    with shape_context(trtp):
        assert trtp.cdiv(trtp.ShapeExpr(DimExpr("N")), 32)._expr.text == "ceil_div(N, 32)"
        assert trtp.cdiv(trtp.ShapeExpr(48), 32).constant_value() == 2


def test_plugin_rule_launch_params(trt):
    trtp = trt.plugin
    params = trtp.KernelLaunchParams()
    params.grid_y = 3
    assert isinstance(params.grid_y, trtp.SymInt32)
    with pytest.raises(AttributeError, match="no attribute 'grid'"):
        params.grid = 3


def test_plugin_rule_aot_args(trt):
    seen: list = []
    _toy(trt, seen)
    built = _build(trt)
    assert ("aot_impl", 32, 1, 0) in seen          # the attribute, the outputs, the default tactic
    assert built["launch"]["grid_x"] == "ceil_div(B, 32)" and built["extra_args"] == ["B"]
    other = make_tensorrt(RELEASES["10.16"], FakeGpu())
    _toy(other, [], extra_is_sym_int32=False)      # SymIntExprs.from_tuple([64]) holds a SymIntExpr, no SymInt32
    with pytest.raises(PluginBuildError, match="SymInt32"):
        _build(other)


def test_plugin_rule_schemas(trt):
    trtp = trt.plugin
    with pytest.raises(ValueError, match="does not have a type annotation"):
        trtp.register("toy::A")(lambda x: x)

    @trtp.register("toy::B")
    def _desc(x: trtp.TensorDesc, k: int) -> trtp.TensorDesc:
        return x.like()

    with pytest.raises(ValueError, match="does not match the expected input arg schema"):
        trtp.aot_impl("toy::B")(lambda x, outputs, k, tactic: None)
    with pytest.raises(ValueError, match="No return annotation found for aot_impl"):
        trtp.aot_impl("toy::B")(lambda x, k, outputs, tactic: None)


# ---------------------------------------------------------------- the rest of TensorRT (RULES)

def test_every_rule_has_its_test():
    for key in RULES:
        assert f"test_rule_{key.replace('-', '_')}" in globals(), key


def _network(trt, tmp_path: Path, **model):
    """A parsed network of the test graph with a builder, config and a dynamic profile at batch 1–2–2."""
    logger = trt.Logger()
    builder = trt.Builder(logger)
    members = trt.NetworkDefinitionCreationFlag.__members__
    network = builder.create_network(1 << members["EXPLICIT_BATCH"] if "EXPLICIT_BATCH" in members else 0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(heads_model(tmp_path / "m.onnx", **model)))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, H, W, 3), (2, H, W, 3), (2, H, W, 3))
    config.add_optimization_profile(profile)
    return logger, builder, network, config, profile, parser


def _calibrator(trt, gpu, batch: np.ndarray):
    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.fed = False

        def get_batch_size(self):
            return len(batch)

        def get_batch(self, names):
            if self.fed:
                return None
            self.fed = True
            ptr = gpu.alloc("device", batch.nbytes)
            gpu.view(ptr, batch.nbytes)[:] = batch.view(np.uint8).ravel()
            return [ptr]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            pass

    return Calibrator()


@pytest.mark.parametrize("fed, ok", [(np.uint8, False), (np.float32, True)])
def test_rule_calibration_float32(tmp_path, fed, ok):
    gpu = FakeGpu()
    trt = make_tensorrt(RELEASES["10.3"], gpu)
    logger, builder, network, config, profile, _ = _network(trt, tmp_path)
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_calibration_profile(profile)
    frames = np.full((2, H, W, 3), 200, np.uint8)
    config.int8_calibrator = _calibrator(trt, gpu, frames.astype(fed))
    built = builder.build_serialized_network(network, config)
    assert (built is not None) == ok
    if ok:
        assert ("trt.calibration-batch", 200.0) in gpu.calls
    else:
        assert "float32" in logger.messages[-1][1]


def _dla(trt, config, fallback: bool) -> None:
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = 0
    config.set_flag(trt.BuilderFlag.FP16)
    if fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def test_rule_dla_static_profile(tmp_path):
    trt = make_tensorrt(RELEASES["10.3"], FakeGpu())
    logger, builder, network, config, _, _ = _network(trt, tmp_path)     # profile 1–2–2
    _dla(trt, config, fallback=False)
    assert builder.build_serialized_network(network, config) is None
    assert "min, opt and max must be equal" in logger.messages[-1][1]
    logger, builder, network, config, _, _ = _network(trt, tmp_path)
    _dla(trt, config, fallback=True)
    assert builder.build_serialized_network(network, config) is not None
    report = [m for _, m in logger.messages]
    assert not [m for m in report if m.startswith("[DlaLayer]")]           # every layer fell back to the GPU


def test_rule_dla_report(tmp_path):
    trt = make_tensorrt(RELEASES["10.3"], FakeGpu())
    logger, builder, network, config, profile, _ = _network(trt, tmp_path, batch=2)   # a fixed batch
    _dla(trt, config, fallback=True)
    assert builder.build_serialized_network(network, config) is not None
    report = [m for severity, m in logger.messages if severity == trt.ILogger.INFO]
    dla_at, gpu_at = report.index("--------------- Layers running on DLA:"), \
        report.index("--------------- Layers running on GPU:")
    assert all(m.startswith("[DlaLayer] {ForeignNode[") for m in report[dla_at + 1:gpu_at])
    assert {m.split(":")[0] for m in report[gpu_at + 1:]} == {"[GpuLayer] CAST", "[GpuLayer] TOPK"}


def test_rule_can_run_on_dla(tmp_path):
    trt = make_tensorrt(RELEASES["10.3"], FakeGpu())
    _, _, network, config, _, _ = _network(trt, tmp_path, batch=2)
    answers = {network.get_layer(i).type.name: config.can_run_on_DLA(network.get_layer(i))
               for i in range(network.num_layers)}
    assert answers["TOPK"] is False and answers["CAST"] is False and answers["ELEMENTWISE"] is True
    _, _, dynamic, config, _, _ = _network(trt, tmp_path)                   # profile 1–2–2: nothing on DLA
    assert not any(config.can_run_on_DLA(dynamic.get_layer(i)) for i in range(dynamic.num_layers))


def test_rule_capture_invalidation():
    gpu = FakeGpu()
    rt = make_cudart(gpu, 12)
    stream = rt.cudaStreamCreateWithFlags(1)[1]
    rt.cudaStreamBeginCapture(stream, 1)
    assert rt.cudaStreamSynchronize(stream)[0] == cudaError_t.cudaErrorStreamCaptureUnsupported
    assert gpu.capturing(stream)                               # still capturing until the capture ends
    assert rt.cudaStreamEndCapture(stream) == (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
    assert not gpu.capturing(stream) and rt.cudaStreamSynchronize(stream)[0] == 0
    assert gpu.live() == ["stream"]                            # no graph was made


def _engine(trt, gpu, tmp_path: Path):
    logger, builder, network, config, _, _ = _network(trt, tmp_path)
    return trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config)), logger


def test_rule_context_none(tmp_path):
    gpu = FakeGpu()
    trt = make_tensorrt(RELEASES["10.3"], gpu)
    engine, _ = _engine(trt, gpu, tmp_path)
    assert engine.create_execution_context() is not None
    gpu.free_memory = engine.device_memory_size_v2 - 1
    assert engine.create_execution_context() is None


@pytest.mark.parametrize("release, names", [("8.5", {"device_memory_size"}),
                                            ("10.3", {"device_memory_size", "device_memory_size_v2"}),
                                            ("11.1", {"device_memory_size_v2"})])
def test_rule_device_memory_size(tmp_path, release, names):
    gpu = FakeGpu()
    trt = make_tensorrt(RELEASES[release], gpu)
    engine, _ = _engine(trt, gpu, tmp_path)
    assert {n for n in ("device_memory_size", "device_memory_size_v2") if hasattr(engine, n)} == names


@pytest.mark.parametrize("major, warns", [(12, False), (13, True)])
def test_rule_int_deprecated(major, warns):


    stream = make_cudart(FakeGpu(), major).cudaStreamCreateWithFlags(1)[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        address = int(stream)
    assert bool([w for w in caught if w.category is DeprecationWarning]) == warns
    assert make_utils().get_cuda_native_handle(stream) == address



# ---------------------------------------------------------------- the rules of the module doc

def test_rule_bindings_per_release():
    def has(release: str, *path: str) -> bool:
        obj = make_tensorrt(RELEASES[release], FakeGpu())
        for name in path:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True

    assert has("8.5", "IInt8EntropyCalibrator2") and not has("11.1", "IInt8EntropyCalibrator2")
    assert not has("8.6", "IProgressMonitor") and has("10.3", "IProgressMonitor")
    assert has("10.3", "BuilderFlag", "FP16") and not has("11.1", "BuilderFlag", "FP16")
    assert has("10.16", "plugin") and not has("10.3", "plugin")


def test_rule_enum_values():
    flags = {r: dict(make_tensorrt(RELEASES[r], FakeGpu()).NetworkDefinitionCreationFlag.__members__)
             for r in ("8.5", "10.3", "11.1")}
    assert int(flags["8.5"]["EXPLICIT_BATCH"]) == 0 and "STRONGLY_TYPED" not in flags["8.5"]
    assert int(flags["10.3"]["STRONGLY_TYPED"]) == 1 and int(flags["11.1"]["STRONGLY_TYPED"]) == 0
    assert "EXPLICIT_BATCH" not in flags["11.1"]


def test_rule_no_dict(trt):
    config = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(AttributeError, match="no attribute 'max_workspace_size'"):
        config.max_workspace_size = 1 << 20


def test_rule_override_lookup():
    trt = make_tensorrt(RELEASES["8.5"], FakeGpu())

    class Mixin:
        def get_batch_size(self):
            return 2

    class MixinLast(trt.IInt8EntropyCalibrator2, Mixin):
        pass

    class OwnMethod(trt.IInt8EntropyCalibrator2):
        def get_batch_size(self):
            return 2

    with pytest.raises(PureVirtualCall):
        _override(MixinLast(), "get_batch_size")()
    assert _override(OwnMethod(), "get_batch_size")() == 2


def test_rule_base_init(trt):
    class NoBaseInit(trt.ILogger):
        def __init__(self):
            pass

        def log(self, severity, msg):
            pass

    with pytest.raises(TypeError, match="__init__\\(\\) must be called"):
        _override(NoBaseInit(), "log")


def test_rule_int8_needs_calibrator(tmp_path):
    trt = make_tensorrt(RELEASES["10.3"], FakeGpu())
    logger, builder, network, config, _, _ = _network(trt, tmp_path)
    config.set_flag(trt.BuilderFlag.INT8)
    assert builder.build_serialized_network(network, config) is None
    assert "Calibrator is not being used" in logger.messages[-1][1]
    logger, builder, network, config, _, _ = _network(trt, tmp_path, qdq=True)   # explicit Q/DQ: no calibrator
    config.set_flag(trt.BuilderFlag.INT8)
    assert builder.build_serialized_network(network, config) is not None


def test_rule_explicit_batch_8x(tmp_path):
    trt = make_tensorrt(RELEASES["8.5"], FakeGpu())
    logger = trt.Logger()
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert not parser.parse_from_file(str(heads_model(tmp_path / "m.onnx")))
    assert "explicit batch dimension" in parser.get_error(0).desc()


def test_rule_profile_needed(tmp_path):
    trt = make_tensorrt(RELEASES["10.3"], FakeGpu())
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(str(heads_model(tmp_path / "m.onnx")))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None
    assert "no optimization profile" in logger.messages[-1][1]


def test_rule_calibration_profile(tmp_path):
    gpu = FakeGpu()
    trt = make_tensorrt(RELEASES["10.3"], gpu)
    logger, builder, network, config, _, _ = _network(trt, tmp_path)
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = _calibrator(trt, gpu, np.zeros((2, H, W, 3), np.float32))
    assert builder.build_serialized_network(network, config) is None
    assert "Calibration optimization profile must be set" in logger.messages[-1][1]


def test_rule_calibration_at_opt(tmp_path):
    gpu = FakeGpu()
    trt = make_tensorrt(RELEASES["10.3"], gpu)
    logger, builder, network, config, profile, _ = _network(trt, tmp_path)   # opt batch 2
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_calibration_profile(profile)
    config.int8_calibrator = _calibrator(trt, gpu, np.zeros((1, H, W, 3), np.float32))
    assert builder.build_serialized_network(network, config) is None
    assert "opt shape (2 frames" in logger.messages[-1][1]


def test_rule_strongly_typed(tmp_path):
    trt = make_tensorrt(RELEASES["11.1"], FakeGpu())
    logger, builder, network, config, _, _ = _network(trt, tmp_path)
    network.get_layer(0).precision = trt.float32
    assert builder.build_serialized_network(network, config) is None
    assert "strongly typed" in logger.messages[-1][1]


def test_rule_topk_initializer(tmp_path):
    import onnx

    path = heads_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    k = next(t for t in model.graph.initializer if t.name == "k")
    model.graph.initializer.remove(k)                          # K becomes a graph input: not an initializer
    model.graph.input.append(onnx.helper.make_tensor_value_info("k", onnx.TensorProto.INT64, [1]))
    onnx.save(model, str(path))
    for release, ok in (("8.5", False), ("8.6", True)):
        trt = make_tensorrt(RELEASES[release], FakeGpu())
        logger = trt.Logger()
        parser = trt.OnnxParser(trt.Builder(logger).create_network(1), logger)
        assert parser.parse_from_file(str(path)) == ok


@pytest.mark.parametrize("release, flags, fails", [
    ("10.3", ["FP16"], "layer cannot run on DLA and GPU fallback is not enabled"),
    ("10.3", ["GPU_FALLBACK"], "DLA supports only FP16 and INT8"),
    ("10.16", ["FP16", "GPU_FALLBACK"], "DLA is not supported by TensorRT 10.16"),
    ("10.3", ["FP16", "GPU_FALLBACK"], None)])
def test_rule_dla_builds(tmp_path, release, flags, fails):
    trt = make_tensorrt(RELEASES[release], FakeGpu())
    logger, builder, network, config, _, _ = _network(trt, tmp_path, batch=2)
    config.default_device_type, config.DLA_core = trt.DeviceType.DLA, 0
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    built = builder.build_serialized_network(network, config)
    assert (built is None) == (fails is not None)
    if fails:
        assert fails in logger.messages[-1][1]


def test_rule_input_shape_outside_profile(tmp_path):
    gpu = FakeGpu()
    engine, _ = _engine(make_tensorrt(RELEASES["10.3"], gpu), gpu, tmp_path)      # profile 1–2–2
    context = engine.create_execution_context()
    assert context.set_input_shape("image", (2, H, W, 3)) is True
    assert context.set_input_shape("image", (3, H, W, 3)) is False


def test_rule_capture_after_shape_change(tmp_path):
    gpu = FakeGpu()
    engine, _ = _engine(make_tensorrt(RELEASES["10.3"], gpu), gpu, tmp_path)
    context = engine.create_execution_context()
    context.set_input_shape("image", (1, H, W, 3))
    addresses = {name: gpu.alloc("device", 1 << 16) for name in engine._io}
    stream = gpu.create_stream()
    gpu.begin_capture(stream)
    assert context._enqueue(addresses, stream) is False          # the first enqueue after a shape change
    gpu.end_capture(stream)
    assert context._enqueue(addresses, stream) is True
    gpu.begin_capture(stream)
    assert context._enqueue(addresses, stream) is True           # captured now
    gpu.end_capture(stream)


def test_rule_engine_compatibility(tmp_path):
    gpu = FakeGpu()
    trt = make_tensorrt(RELEASES["10.3"], gpu)
    _, builder, network, config, _, _ = _network(trt, tmp_path)
    plan = builder.build_serialized_network(network, config)
    newer = make_tensorrt(RELEASES["10.16"], gpu)
    assert newer.Runtime(newer.Logger()).deserialize_cuda_engine(plan) is None
    other_gpu = make_tensorrt(RELEASES["10.3"], FakeGpu(sm_count=8))
    assert other_gpu.Runtime(other_gpu.Logger()).deserialize_cuda_engine(plan) is None
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan) is not None


def test_rule_aot_engine_standalone(tmp_path):
    gpu = FakeGpu()
    trt = make_tensorrt(RELEASES["10.16"], gpu)
    _, builder, network, config, _, _ = _network(trt, tmp_path)
    plan = json.loads(builder.build_serialized_network(network, config))
    plan["aot_plugins"] = [{"id": "slsg::GraphAttention", "kernel": "graph_attention_kernel"}]
    assert not trt._registry                                   # nothing registered in this process
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(json.dumps(plan).encode()) is not None
