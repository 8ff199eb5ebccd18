"""A fake `tensorrt` module that behaves like the pybind bindings of one TensorRT release.

Written per release from NVIDIA's sources and documentation — never from edge_runtime's code:

* which classes, methods, properties and enum members exist: the pybind definitions in NVIDIA/TensorRT
  `python/src/infer/pyCore.cpp`, `pyInt8.cpp`, `python/src/parsers/pyOnnx.cpp` at release/8.5, release/8.6,
  v10.3.0, v10.16 and v11.1 (e.g. `execute_async_v2`, `num_bindings` and `get_binding_index` exist only in
  8.x; `IInt8EntropyCalibrator2`, `int8_calibrator`, `set_calibration_profile` and BuilderFlag FP16/INT8/
  PREFER_PRECISION_CONSTRAINTS are gone in 11.1; `IProgressMonitor`/`progress_monitor` from 10.x;
  `IParserError.node_name()` from 10.x); enum values from `include/NvInfer.h` (kEXPLICIT_BATCH = 0 in 8.5,
  kEXPLICIT_BATCH = 0 / kSTRONGLY_TYPED = 1 in 10.3, kSTRONGLY_TYPED = 0 in 11.1).
* pybind objects have no `__dict__`: assigning an attribute a release does not bind raises AttributeError.
* Python overrides of trampoline classes (ILogger, IInt8EntropyCalibrator2, IProgressMonitor) are found the
  way pybind11's `get_type_override` finds them: attribute lookup on the instance's type, and a hit on a
  C++-bound function means "not overridden". pyInt8.cpp binds documentation stubs for `get_batch`,
  `get_batch_size`, `read_calibration_cache`, `write_calibration_cache` ("Fake bindings ... solely for
  documentation purposes"), so a Python class whose MRO reaches them first is not overridden and TensorRT
  calls the pure virtual: `PureVirtualCall` stands for that abort. A trampoline whose base `__init__` was not
  called is refused (pybind11 ≥ 2.6: "__init__() must be called when overriding __init__").
* build rules, with the text TensorRT logs: INT8 without Q/DQ layers needs a calibrator (Polygraphy
  backend/trt/config.py: "No Q/DQ layers means that we will need to calibrate"); an implicit-batch network
  is refused by the 8.x ONNX parser (onnx-tensorrt 8.5-GA ModelImporter.cpp); dynamic inputs need an
  optimisation profile (IOptimizationProfile docs); "Calibration optimization profile must be set if int8
  calibration is used to set scales for a network with runtime dimensions" (pyCoreDoc.h,
  set_calibration_profile) and calibration
  runs at the profile's kOPT shape (Polygraphy: "Will use `opt` shapes from profile 0 for calibration");
  strongly typed networks refuse layer precision/output types (NvInfer.h, kSTRONGLY_TYPED); TopK's K must be
  an initializer on 8.5 (onnx-tensorrt 8.5-GA docs/operators.md); DLA builds need FP16 or INT8 and fail on
  layers DLA cannot run unless GPU_FALLBACK is set, and exist in 8.5–10.7 and 11.4.1+ only ("Working with
  DLA", TensorRT 11.4.1); `set_input_shape` returns False outside the profile (IExecutionContext
  setInputShape); capture is refused before the first enqueue after a shape change (Developer Guide, CUDA
  Graphs: enqueue once before capturing); an engine from another TensorRT version or GPU deserialises to None.
* an engine built with an ahead-of-time plugin deserialises and runs without any plugin registered
  (samples/python/quickly_deployable_plugins/README.md, "Loading and running a TRT engine containing an AOT
  plugin"). `tensorrt.plugin` itself, and the builder's calls into a registered plugin (register on dummy then
  real shapes, autotune from format selection, aot_impl from launch parameters), are fakes/tensorrt_plugin.py.

What the fake engine computes (so tests know every output): anomaly_map = channel mean / 255;
score = mean of the frame's map; score_<head> = score × len(head).
"""

from __future__ import annotations

import enum
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.tensorrt import versions

from .cudart import make_cudart, make_utils
from .gpu import FakeGpu
from .pycuda import make_pycuda
from .tensorrt_plugin import (
    DimensionOperation,
    PluginBuildError,
    PluginInput,
    TensorFormat,
    build_aot_plugin,
    make_plugin_module,
)

#: Every rule of this fake with its source (the module doc explains them); test_tensorrt_fake.py has one test
#: per entry, named test_rule_<key>, so a change that drops a rule fails there.
RULES = {
    "bindings-per-release": "python/src/infer/pyCore.cpp, pyInt8.cpp, python/src/parsers/pyOnnx.cpp @ release/8.5, "
                            "release/8.6, v10.3.0, v10.16, v11.1: which methods, flags and classes each binds",
    "enum-values": "include/NvInfer.h: kEXPLICIT_BATCH = 0 @ release/8.5; kSTRONGLY_TYPED = 1 @ v10.3.0, 0 @ v11.1",
    "no-dict": "pybind11 class_ without py::dynamic_attr(): setting an unbound attribute raises AttributeError",
    "override-lookup": "pybind11 get_type_override with pyInt8.cpp's documentation stubs ('Fake bindings ... solely "
                       "for documentation purposes'): a mixin after the TensorRT class is not an override",
    "base-init": "pybind11 >= 2.6: '__init__() must be called when overriding __init__'",
    "int8-needs-calibrator": "Polygraphy backend/trt/config.py @ v10.16: 'No Q/DQ layers means that we will need "
                             "to calibrate'",
    "explicit-batch-8x": "onnx-tensorrt 8.5-GA ModelImporter.cpp: the 8.x parser refuses implicit-batch networks",
    "profile-needed": "IOptimizationProfile docs: dynamic inputs need an optimization profile",
    "calibration-profile": "python/docstrings/infer/pyCoreDoc.h (set_calibration_profile): required for int8 "
                           "calibration of a network with runtime dimensions",
    "calibration-at-opt": "Polygraphy backend/trt/calibrator.py @ v10.16: 'Will use `opt` shapes from profile 0 for "
                          "calibration'",
    "strongly-typed": "include/NvInfer.h @ v10.3.0 (kSTRONGLY_TYPED): layer precisions and output types are refused",
    "topk-initializer": "onnx-tensorrt docs/operators.md @ 8.5-GA: TopK's K must be an initializer (8.6 lifts it)",
    "dla-builds": "'Working with DLA' and TensorRT 11.4.1 release notes: FP16/INT8 only, GPU_FALLBACK for layers "
                  "DLA lacks, no DLA in 10.8–11.4.0",
    "input-shape-outside-profile": "IExecutionContext.setInputShape (NvInferRuntime.h @ v10.3.0): False outside the "
                                   "profile",
    "capture-after-shape-change": "Developer Guide, CUDA Graphs: enqueue once after a shape change before capturing",
    "engine-compatibility": "IRuntime.deserializeCudaEngine: a plan from another TensorRT or GPU gives None",
    "aot-engine-standalone": "samples/python/quickly_deployable_plugins/README.md @ v10.16: an engine with an AOT "
                             "plugin loads and runs with no plugin registered",
    "calibration-float32": "Polygraphy backend/trt/calibrator.py @ v10.16 (Calibrator.set_input_metadata) and "
                           "CHANGELOG 0.49.10: TensorRT reads every non-index calibration input as float32",
    "dla-static-profile": "TensorRT docs, DLA Supported Layers and Restrictions (General Restrictions): no dynamic "
                          "dimensions on DLA, the profile's min, opt and max must be equal; with GPU fallback the "
                          "layers run on the GPU",
    "dla-report": "samples/sampleCudla/README.md @ v10.16: the builder logs 'Layers running on DLA:' with "
                  "[DlaLayer] {ForeignNode[...]} lines, then 'Layers running on GPU:'",
    "can-run-on-dla": "python/src/infer/pyCore.cpp @ release/8.5 … v11.1: IBuilderConfig.can_run_on_DLA(layer)",
    "context-none": "include/NvInferRuntime.h @ v10.3.0: createExecutionContext is noexcept and allocates the "
                    "activation memory (kSTATIC); when it cannot it returns nullptr, None in Python",
    "device-memory-size": "python/src/infer/pyCore.cpp: device_memory_size @ release/8.5 … v10.16, "
                          "device_memory_size_v2 @ v10.3.0 … v11.1",
    "int-deprecated": "cuda-bindings 13.0.0 release notes: int(cuda_obj) is deprecated, use "
                      "cuda.bindings.utils.get_cuda_native_handle (fakes/cudart.py)",
    "capture-invalidation": "CUDA Runtime API, cudaStreamBeginCapture / cudaStreamEndCapture (fakes/cudart.py): a "
                            "capture-illegal call invalidates the capture, which stays open until EndCapture "
                            "returns cudaErrorStreamCaptureInvalidated and no graph",
}


class PureVirtualCall(BaseException):
    """TensorRT called a pure virtual method through a trampoline: the real process aborts here."""


@dataclass(frozen=True)
class Release:
    version: str
    explicit_batch_member: bool     # NetworkDefinitionCreationFlag.EXPLICIT_BATCH bound
    explicit_batch_required: bool   # 8.x parser refuses implicit-batch networks
    strongly_typed_value: int | None  # kSTRONGLY_TYPED's value, None when absent
    weak_typing: bool               # BuilderFlag FP16 / INT8 / PREFER_PRECISION_CONSTRAINTS bound
    implicit_int8: bool             # IInt8EntropyCalibrator2, int8_calibrator, set_calibration_profile
    bindings_api: bool              # execute_async_v2, num_bindings, get_binding_index
    progress_monitor: bool
    parser_node_names: bool
    dla: bool
    topk_constant_k: bool
    plugins: str                    # "none" | "aot" (tensorrt.plugin with aot_impl)
    always_strongly_typed: bool = False


RELEASES = {
    "8.5": Release("8.5.2.2", True, True, None, True, True, True, False, False, True, True, "none"),
    "8.6": Release("8.6.2.3", True, True, None, True, True, True, False, False, True, False, "none"),
    "10.3": Release("10.3.0.30", True, False, 1, True, True, False, True, True, True, False, "none"),
    "10.16": Release("10.16.1.11", True, False, 1, True, True, False, True, True, False, False, "aot"),
    "11.1": Release("11.1.0.106", False, False, 0, False, False, False, True, True, False, False, "aot", True),
    "11.4": Release("11.4.1.5", False, False, 0, False, False, False, True, True, True, False, "aot", True),
}
#: The versions the builder supports, one per line of the design's table (11.4 adds DLA back).
CONTRACT = ("8.5", "8.6", "10.3", "10.16", "11.1")


class _Bound:
    """A pybind object: only the attributes the release binds can be set."""

    _settable: frozenset = frozenset()

    def __setattr__(self, name: str, value) -> None:
        if not name.startswith("_") and name not in self._settable:
            raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


def _cpp(fn):
    fn._cpp_function = True      # a C++-bound method, as pybind11's is_cpp_function sees it
    return fn


def _override(obj, name: str):
    """pybind11 get_type_override: the Python override of `name`, or PureVirtualCall."""
    if not getattr(obj, "_trampoline_initialised", False):
        raise TypeError(f"{type(obj).__name__}.__init__() must be called when overriding __init__")
    found = getattr(type(obj), name, None)
    if found is None or getattr(found, "_cpp_function", False):
        raise PureVirtualCall(f'Tried to call pure virtual function "{name}"')
    return getattr(obj, name)


def make_tensorrt(release: Release, gpu: FakeGpu) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = release.version
    trt.__file__ = f"/fake/tensorrt-{release.version}/__init__.py"
    rec = gpu.record
    major = int(release.version.split(".")[0])
    registry: dict = {}            # tensorrt.plugin registrations: id → PluginDef (fakes/tensorrt_plugin.py)

    class DataType(enum.Enum):
        FLOAT, HALF, INT8, INT32, BOOL, UINT8, INT64 = range(7)

    numpy_of = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.UINT8: np.uint8,
                DataType.INT32: np.int32, DataType.INT8: np.int8, DataType.INT64: np.int64, DataType.BOOL: np.bool_}
    onnx_types = {1: DataType.FLOAT, 10: DataType.HALF, 2: DataType.UINT8, 3: DataType.INT8, 6: DataType.INT32,
                  7: DataType.INT64, 9: DataType.BOOL}

    class TensorIOMode(enum.Enum):
        NONE, INPUT, OUTPUT = range(3)

    class LayerType(enum.Enum):
        CAST, REDUCE, TOPK, SOFTMAX, SHUFFLE, ELEMENTWISE, ACTIVATION, CONVOLUTION, PLUGIN_V3, IDENTITY, \
            QUANTIZE, DEQUANTIZE = range(12)

    layer_of = {"Cast": LayerType.CAST, "ReduceMean": LayerType.REDUCE, "ReduceMax": LayerType.REDUCE,
                "TopK": LayerType.TOPK, "Softmax": LayerType.SOFTMAX, "Reshape": LayerType.SHUFFLE,
                "Transpose": LayerType.SHUFFLE, "Div": LayerType.ELEMENTWISE, "Mul": LayerType.ELEMENTWISE,
                "Sub": LayerType.ELEMENTWISE, "Add": LayerType.ELEMENTWISE, "Sigmoid": LayerType.ACTIVATION,
                "Conv": LayerType.CONVOLUTION, "Identity": LayerType.IDENTITY,
                "QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE}
    dla_unsupported = {LayerType.TOPK, LayerType.CAST, LayerType.PLUGIN_V3}
    CALIBRATION_AS_IS = {DataType.FLOAT, DataType.INT32, DataType.INT64, DataType.BOOL}  # noqa: N806

    flag_members = {}
    if release.explicit_batch_member:
        flag_members["EXPLICIT_BATCH"] = 0
    if release.strongly_typed_value is not None:
        flag_members["STRONGLY_TYPED"] = release.strongly_typed_value
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flag_members)
    builder_flags = ["GPU_FALLBACK", "TF32", "REFIT"]
    if release.weak_typing:
        builder_flags += ["FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS", "OBEY_PRECISION_CONSTRAINTS"]
    BuilderFlag = enum.Enum("BuilderFlag", builder_flags)  # noqa: N806
    trt.BuilderFlag = BuilderFlag
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    DeviceType = enum.Enum("DeviceType", ["GPU", "DLA"])  # noqa: N806
    trt.DeviceType = DeviceType
    trt.DataType, trt.TensorIOMode, trt.LayerType = DataType, TensorIOMode, LayerType
    trt.TensorFormat, trt.DimensionOperation = TensorFormat, DimensionOperation
    trt.float32, trt.float16, trt.int8, trt.int32 = DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32
    trt.uint8, trt.bool, trt.int64 = DataType.UINT8, DataType.BOOL, DataType.INT64

    # ---------------------------------------------------------------- trampolines
    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            self._trampoline_initialised = True

        @_cpp
        def log(self, severity, msg):
            pass

    class Logger(ILogger):
        def __init__(self, min_severity=ILogger.WARNING):
            ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

    trt.ILogger, trt.Logger = ILogger, Logger

    def log(logger, severity, msg):
        _override(logger, "log")(severity, msg)

    if release.implicit_int8:
        class IInt8Calibrator:
            def __init__(self):
                self._trampoline_initialised = True

            @_cpp
            def get_batch_size(self):
                return 1

            @_cpp
            def get_batch(self, names):
                return []

            @_cpp
            def read_calibration_cache(self):
                return None

            @_cpp
            def write_calibration_cache(self, cache):
                pass

        class IInt8EntropyCalibrator2(IInt8Calibrator):
            pass

        trt.IInt8Calibrator, trt.IInt8EntropyCalibrator2 = IInt8Calibrator, IInt8EntropyCalibrator2

    if release.progress_monitor:
        class IProgressMonitor:
            def __init__(self):
                self._trampoline_initialised = True

            @_cpp
            def phase_start(self, phase_name, parent_phase, num_steps):
                pass

            @_cpp
            def step_complete(self, phase_name, step):
                return True

            @_cpp
            def phase_finish(self, phase_name):
                pass

        trt.IProgressMonitor = IProgressMonitor

    # ---------------------------------------------------------------- network
    @dataclass
    class ITensor:
        name: str
        shape: tuple
        dtype: DataType

    class ILayer(_Bound):
        _settable = frozenset({"precision", "name"})

        def __init__(self, network, op, outputs, name=""):
            self._network, self._outputs = network, outputs
            object.__setattr__(self, "type", layer_of.get(op, LayerType.PLUGIN_V3))
            object.__setattr__(self, "name", name or f"(Unnamed Layer* {len(network._layers)}) [{self.type.name}]")
            self._precision = DataType.FLOAT
            self._plugin = None           # (PluginDef, fields, [PluginInput]) for a plugin layer

        @property
        def precision(self):
            return self._precision

        @precision.setter
        def precision(self, dtype):
            if self._network._strongly_typed:
                self._network._errors.append("Setting layer precision is not allowed in a strongly typed network")
            self._precision = dtype

        @property
        def num_outputs(self):
            return len(self._outputs)

        def get_output(self, j):
            return self._outputs[j]

        def set_output_type(self, j, dtype):
            if self._network._strongly_typed:
                self._network._errors.append("Setting layer output types is not allowed in a strongly typed network")
            self._outputs[j] = ITensor(self._outputs[j].name, self._outputs[j].shape, dtype)

    class INetworkDefinition(_Bound):
        def __init__(self, explicit_batch, strongly_typed):
            self._explicit_batch, self._strongly_typed = explicit_batch, strongly_typed
            self._inputs, self._outputs, self._layers, self._errors = [], [], [], []
            self._plugins = []

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))
        num_layers = property(lambda self: len(self._layers))

        def get_input(self, i):
            return self._inputs[i]

        def get_output(self, i):
            return self._outputs[i]

        def get_layer(self, i):
            return self._layers[i]

    @dataclass
    class IParserError:
        _code: str
        _desc: str
        _node: int
        _name: str
        _op: str

        def code(self):
            return f"ErrorCode.{self._code}"

        def desc(self):
            return self._desc

        def node(self):
            return self._node

    if release.parser_node_names:
        IParserError.node_name = lambda self: self._name
        IParserError.node_operator = lambda self: self._op

    def dims(value_info):
        return tuple(-1 if (d.dim_param or d.dim_value == 0) else int(d.dim_value)
                     for d in value_info.type.tensor_type.shape.dim)

    def tensor_info(graph) -> dict:
        """name → (dims, DataType) for the graph's inputs, outputs, value_info and initializers. TensorRT infers
        intermediate shapes itself; this fake reads them from value_info (the exporter writes it)."""
        out = {vi.name: (dims(vi), onnx_types[vi.type.tensor_type.elem_type])
               for vi in (*graph.input, *graph.value_info, *graph.output)}
        out.update({t.name: (tuple(int(d) for d in t.dims), onnx_types[t.data_type]) for t in graph.initializer})
        return out

    def plugin_layer(definition, attrs: dict, node, known: dict) -> tuple:
        """The plugin's fields are the register function's attributes (tensorrt/plugin/_lib.py @ v10.9.0:
        _TemplatePluginCreator lists them as its field names; create_plugin converts each with its annotation)."""
        fields = {}
        for name, annotation in definition.attrs.items():
            if name in attrs:
                value = attrs[name]
                fields[name] = value.decode() if isinstance(value, bytes) and annotation is str else annotation(value)
        missing = [n for n in node.input if n not in known]
        if missing:
            raise ValueError(f"the fake parser needs value_info for plugin inputs {missing}")
        return definition, fields, [PluginInput(n, *known[n]) for n in node.input]

    class OnnxParser(_Bound):
        def __init__(self, network, logger):
            self._network, self._logger, self._errors = network, logger, []
            rec("trt.OnnxParser")

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, i):
            return self._errors[i]

        def parse_from_file(self, path):
            import onnx

            rec("trt.parse_from_file", Path(path).name)
            net = self._network
            if release.explicit_batch_required and not net._explicit_batch:
                self._errors.append(IParserError(
                    "INVALID_VALUE", "This version of the ONNX parser only supports TensorRT INetworkDefinitions "
                    "with an explicit batch dimension. Please ensure the network was created using the "
                    "EXPLICIT_BATCH NetworkDefinitionCreationFlag.", -1, "", ""))
                return False
            model = onnx.load(str(path))
            graph = model.graph
            inits = {t.name for t in graph.initializer}
            for vi in graph.input:
                if vi.name not in inits:
                    net._inputs.append(ITensor(vi.name, dims(vi), onnx_types[vi.type.tensor_type.elem_type]))
            known = tensor_info(graph)
            for index, node in enumerate(graph.node):
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                plugin = None
                if node.op_type not in layer_of:
                    namespace = attrs.get("plugin_namespace", b"").decode() or node.domain
                    plugin_id = f"{namespace}::{node.op_type}"
                    if plugin_id not in registry:
                        self._errors.append(IParserError(
                            "UNSUPPORTED_NODE", f"No importer registered for op: {node.op_type}. Attempted to "
                            f"import as plugin: plugin {plugin_id} not found", index, node.name, node.op_type))
                        continue
                    plugin = plugin_layer(registry[plugin_id], attrs, node, known)
                    net._plugins.append(plugin_id)
                if node.op_type == "TopK" and release.topk_constant_k and node.input[1] not in inits:
                    self._errors.append(IParserError("UNSUPPORTED_NODE", "TopK: K input must be an initializer",
                                                     index, node.name, node.op_type))
                    continue
                layer = ILayer(net, node.op_type, [ITensor(o, (), DataType.FLOAT) for o in node.output], node.name)
                layer._plugin = plugin
                net._layers.append(layer)
            for vi in graph.output:
                net._outputs.append(ITensor(vi.name, dims(vi), onnx_types[vi.type.tensor_type.elem_type]))
            return not self._errors

    trt.OnnxParser = OnnxParser

    # ---------------------------------------------------------------- builder
    class IOptimizationProfile(_Bound):
        def __init__(self):
            self._shapes = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002  (TensorRT's argument names)
            if not all(a <= b <= c for a, b, c in zip(min, opt, max)):
                raise ValueError("min ≤ opt ≤ max must hold for every dimension")
            self._shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class ITimingCache:
        def __init__(self, data):
            self.entries = data

        def serialize(self):
            return (f"timing:{release.version}:".encode() + self.entries.split(b":", 2)[-1]
                    if self.entries else f"timing:{release.version}:".encode())

    config_attrs = {"default_device_type", "DLA_core"}
    if release.implicit_int8:
        config_attrs.add("int8_calibrator")
    if release.progress_monitor:
        config_attrs.add("progress_monitor")

    class IBuilderConfig(_Bound):
        _settable = frozenset(config_attrs)

        def __init__(self):
            self._flags, self._profiles, self._pools = set(), [], {}
            self._calibration_profile = None
            self._timing = None
            object.__setattr__(self, "default_device_type", DeviceType.GPU)
            object.__setattr__(self, "DLA_core", -1)
            if release.implicit_int8:
                object.__setattr__(self, "int8_calibrator", None)
            if release.progress_monitor:
                object.__setattr__(self, "progress_monitor", None)

        def set_flag(self, flag):
            if not isinstance(flag, BuilderFlag):
                raise TypeError("set_flag(): incompatible function arguments")
            rec("trt.set_flag", flag.name)
            self._flags.add(flag.name)

        def get_flag(self, flag):
            return flag.name in self._flags

        def set_memory_pool_limit(self, pool, size):
            rec("trt.set_memory_pool_limit", pool.name, size)
            self._pools[pool.name] = size

        def add_optimization_profile(self, profile):
            rec("trt.add_optimization_profile", dict(profile._shapes))
            self._profiles.append(profile)
            return len(self._profiles) - 1

        if release.implicit_int8:
            def set_calibration_profile(self, profile):
                rec("trt.set_calibration_profile")
                self._calibration_profile = profile
                return True

        def create_timing_cache(self, data):
            return ITimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.entries and not cache.entries.startswith(f"timing:{release.version}:".encode()):
                return False
            self._timing = cache
            return True

        def get_timing_cache(self):
            return self._timing

        def can_run_on_DLA(self, layer):
            """pyCore.cpp (release/8.5 to v11.1) binds IBuilderConfig.canRunOnDLA; DLA runs neither the layer types
            it lacks nor dynamic dimensions ("DLA Supported Layers and Restrictions")."""
            return release.dla and layer.type not in dla_unsupported and not dynamic_profile(layer._network, self)

    def dynamic_profile(network, config) -> bool:
        """A dynamic input whose profile has min ≠ max: DLA cannot run it (the profile's min, max and opt must be
        equal for wildcard dimensions: "DLA Supported Layers and Restrictions", General Restrictions)."""
        profile = config._profiles[0] if config._profiles else None
        return any(-1 in t.shape and profile is not None and t.name in profile._shapes
                   and profile._shapes[t.name][0] != profile._shapes[t.name][2] for t in network._inputs)

    class IHostMemory(bytes):
        nbytes = property(len)

    class Builder(_Bound):
        def __init__(self, logger):
            if not isinstance(logger, ILogger):
                raise TypeError("Builder(): incompatible constructor arguments")
            self._logger = logger
            rec("trt.Builder")

        num_DLA_cores = property(lambda self: gpu.dla_cores if (release.dla and gpu.integrated) else 0)

        def create_network(self, flags=0):
            rec("trt.create_network", flags)
            members = trt.NetworkDefinitionCreationFlag
            explicit = (not release.explicit_batch_required) or bool(flags & (1 << members.EXPLICIT_BATCH))
            typed = release.always_strongly_typed or (
                "STRONGLY_TYPED" in members.__members__ and bool(flags & (1 << members.STRONGLY_TYPED)))
            return INetworkDefinition(explicit, typed)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def _error(self, msg):
            log(self._logger, ILogger.ERROR, msg)
            return None

        def _calibrate(self, network, config, opt_batch):
            calibrator = config.int8_calibrator
            cache = _override(calibrator, "read_calibration_cache")()
            if cache:
                rec("trt.calibration-cache-read")
                return True
            _override(calibrator, "get_batch_size")()
            names = [t.name for t in network._inputs]
            image = network._inputs[0]
            # Non-index calibration inputs are read as float32 (Polygraphy backend/trt/calibrator.py @ v10.16,
            # Calibrator.set_input_metadata; CHANGELOG 0.49.10: "required by TensorRT").
            read_as = image.dtype if image.dtype in CALIBRATION_AS_IS else DataType.FLOAT
            item = np.dtype(numpy_of[read_as])
            need = opt_batch * int(np.prod(image.shape[1:])) * item.itemsize
            batches = 0
            while True:
                pointers = _override(calibrator, "get_batch")(names)
                if not pointers:
                    break
                if len(pointers) != len(names) or any(gpu.size_at(int(p)) < need for p in pointers):
                    self._error(f"calibration batch does not hold the calibration profile's opt shape "
                                f"({opt_batch} frames of {item.name}, {need} bytes)")
                    return False
                values = gpu.view(int(pointers[0]), need).view(item)
                rec("trt.calibration-batch", float(values.astype(np.float64).mean()))
                batches += 1
            if not batches:
                self._error("calibration failed: the calibrator gave no batch")
                return False
            rec("trt.calibrated", batches)
            _override(calibrator, "write_calibration_cache")(memoryview(
                f"TRT-{release.version}-EntropyCalibration2\n{names[0]}: 3c010a14\n".encode()))
            return True

        def _report_placement(self, network, config):
            """The builder's DLA report, one INFO message per line: consecutive DLA layers form one
            {ForeignNode[first...last]} (samples/sampleCudla/README.md @ v10.16 shows the DLA lines; the GPU
            lines here follow the same pattern with the layer type)."""
            groups, run = [], []
            for layer in network._layers:
                if config.can_run_on_DLA(layer):
                    run.append(layer.name)
                    continue
                if run:
                    groups.append(run)
                run = []
            if run:
                groups.append(run)
            log(self._logger, ILogger.INFO, "--------------- Layers running on DLA:")
            for g in groups:
                span = g[0] if len(g) == 1 else f"{g[0]}...{g[-1]}"
                log(self._logger, ILogger.INFO, f"[DlaLayer] {{ForeignNode[{span}]}},")
            log(self._logger, ILogger.INFO, "--------------- Layers running on GPU:")
            for layer in network._layers:
                if not config.can_run_on_DLA(layer):
                    log(self._logger, ILogger.INFO, f"[GpuLayer] {layer.type.name}: {layer.name},")

        def build_serialized_network(self, network, config):
            rec("trt.build_serialized_network")
            if network._errors:
                return self._error(network._errors[0])
            dynamic = [t for t in network._inputs if -1 in t.shape]
            profile = config._profiles[0] if config._profiles else None
            if dynamic and profile is None:
                return self._error("Network has dynamic or shape inputs, but no optimization profile has been "
                                   "defined.")
            for t in dynamic:
                if profile is None or t.name not in profile._shapes:
                    return self._error(f"optimization profile is missing values for input {t.name}")
                if tuple(profile._shapes[t.name][0][1:]) != tuple(t.shape[1:]):
                    return self._error(f"profile dimensions for {t.name} do not match the network")
            image = network._inputs[0]
            profiled = profile is not None and image.name in profile._shapes
            opt_batch = profile._shapes[image.name][1][0] if profiled else image.shape[0]
            on_dla = config.default_device_type == DeviceType.DLA
            if on_dla:
                if not release.dla:
                    return self._error(f"DLA is not supported by TensorRT {release.version} on this platform")
                if not 0 <= config.DLA_core < self.num_DLA_cores:
                    return self._error(f"DLA core {config.DLA_core} is not available ({self.num_DLA_cores} cores)")
                if release.weak_typing and not ({"FP16", "INT8"} & config._flags):
                    return self._error("DLA supports only FP16 and INT8: set BuilderFlag.FP16 or INT8")
                if "GPU_FALLBACK" not in config._flags:
                    if dynamic_profile(network, config):
                        return self._error("DLA does not support dynamic dimensions: the optimization profile's "
                                           "min, opt and max must be equal")
                    bad = [layer.type.name for layer in network._layers if layer.type in dla_unsupported]
                    if bad:
                        return self._error(f"{bad[0]} layer cannot run on DLA and GPU fallback is not enabled")
                if getattr(trt, "_log_dla_report", True):
                    self._report_placement(network, config)
            explicit_q = any(la.type in (LayerType.QUANTIZE, LayerType.DEQUANTIZE) for la in network._layers)
            if "INT8" in config._flags and release.implicit_int8 and not explicit_q:   # Polygraphy config.py
                if config.int8_calibrator is None:
                    return self._error("Calibrator is not being used. Users must provide dynamic range for all "
                                       "tensors that are not Int32 or Bool.")
                if dynamic and config._calibration_profile is None:
                    return self._error("Calibration optimization profile must be set if int8 calibration is used "
                                       "to set scales for a network with runtime dimensions")
                if not self._calibrate(network, config, opt_batch):
                    return None
            aot = []
            for layer in network._layers:
                if layer._plugin is not None:
                    definition, fields, inputs = layer._plugin
                    try:
                        aot.append(build_aot_plugin(trt.plugin, definition, fields, inputs, opt_batch))
                    except PluginBuildError as exc:
                        return self._error(f"{exc} (plugin {definition.plugin_id}, layer {layer.name})")
            monitor = getattr(config, "progress_monitor", None)
            if monitor is not None:
                _override(monitor, "phase_start")("Building engine", None, 2)
                for step in range(2):
                    if not _override(monitor, "step_complete")("Building engine", step):
                        _override(monitor, "phase_finish")("Building engine")
                        return self._error("build cancelled by the progress monitor")
                _override(monitor, "phase_finish")("Building engine")
            if config._timing is not None:
                config._timing.entries = f"timing:{release.version}:{len(network._layers)} layers".encode()
            plan = {"tensorrt": release.version, "gpu": [gpu.name, list(gpu.compute_capability), gpu.sm_count],
                    "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network._inputs],
                    "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network._outputs],
                    "profile": ([list(s) for s in profile._shapes[image.name]]
                                if profile and image.name in profile._shapes else None),
                    "dla_core": config.DLA_core if on_dla else -1, "flags": sorted(config._flags),
                    "aot_plugins": aot}
            return IHostMemory(json.dumps(plan).encode())

    trt.Builder = Builder

    # ---------------------------------------------------------------- runtime
    class IExecutionContext(_Bound):
        def __init__(self, engine):
            self._engine = engine         # keep_alive: a context keeps its engine alive
            self._addresses, self._shapes, self._shape_changed = {}, {}, True
            for name, shape, _ in engine._plan["inputs"]:
                if -1 not in shape:
                    self._shapes[name] = tuple(shape)

        def set_input_shape(self, name, shape):
            rec("trt.set_input_shape", name, tuple(shape))
            profile = self._engine._plan["profile"]
            ok = (name in self._engine._inputs and profile is not None
                  and all(lo <= s <= hi for lo, s, hi in zip(profile[0], shape, profile[2]))
                  and len(shape) == len(profile[0]))
            if ok:
                self._shapes[name] = tuple(shape)
                self._shape_changed = True
            return ok

        def set_tensor_address(self, name, ptr):
            rec("trt.set_tensor_address", name)
            if name not in self._engine._io:
                return False
            self._addresses[name] = int(ptr)
            return True

        def _enqueue(self, addresses, stream):
            engine = self._engine
            if set(addresses) != set(engine._io) or not all(addresses.values()):
                return False
            name = engine._plan["inputs"][0][0]
            if name not in self._shapes:
                log(engine._runtime._logger, ILogger.ERROR, "input shape not specified")
                return False
            if gpu.capturing(stream) and self._shape_changed:
                log(engine._runtime._logger, ILogger.ERROR, "enqueue inside a stream capture needs one enqueue "
                    "before capturing (deferred allocation after a shape change)")
                return False
            self._shape_changed = False
            b, h, w, c = self._shapes[name]
            rec("trt.enqueue", b)

            def work():
                image = gpu.view(addresses[name], b * h * w * c).reshape(b, h, w, c)
                amap = image.astype(np.float64).mean(axis=3) / 255.0
                for out, _shape, dtype in engine._plan["outputs"]:
                    dt = np.dtype(numpy_of[DataType[dtype]])
                    if out == "anomaly_map":
                        value = amap[:, None]
                    else:
                        score = amap.reshape(b, -1).mean(axis=1)
                        value = score * (len(out) - len("score_") if out.startswith("score_") else 1)
                    data = np.ascontiguousarray(value, dtype=dt)
                    gpu.view(addresses[out], data.nbytes)[:] = data.view(np.uint8).ravel()

            gpu.enqueue(stream, work)
            return True

        def execute_async_v3(self, stream_handle):
            return self._enqueue(dict(self._addresses), stream_handle)

        if release.bindings_api:
            def execute_async_v2(self, bindings, stream_handle):
                return self._enqueue({n: int(bindings[i]) for i, n in enumerate(self._engine._io)}, stream_handle)

        def __del__(self):
            rec("trt.context-destroyed")

    class ICudaEngine(_Bound):
        def __init__(self, runtime, plan):
            self._runtime, self._plan = runtime, plan   # keep_alive: an engine keeps its runtime alive
            self._inputs = [t[0] for t in plan["inputs"]]
            self._io = self._inputs + [t[0] for t in plan["outputs"]]
            self._spec = {t[0]: t for t in plan["inputs"] + plan["outputs"]}

        num_io_tensors = property(lambda self: len(self._io))

        def get_tensor_name(self, i):
            return self._io[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name in self._inputs else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return tuple(self._spec[name][1])

        def get_tensor_dtype(self, name):
            return DataType[self._spec[name][2]]

        def get_tensor_profile_shape(self, name, profile_index):
            profile = self._plan["profile"]
            if name not in self._inputs or profile is None or profile_index != 0:
                raise RuntimeError("no such profile for this tensor")
            return [list(s) for s in profile]

        def _activation_bytes(self):
            inputs = self._plan["inputs"][0][1]
            batch = self._plan["profile"][2][0] if self._plan["profile"] else inputs[0]
            return batch * int(np.prod(inputs[1:])) * 4

        if major < 11:                                      # device_memory_size: 8.5 … 10.x (gone in 11.1)
            device_memory_size = property(_activation_bytes)
        if major >= 10:                                     # device_memory_size_v2: 10.1 … 11.x
            device_memory_size_v2 = property(_activation_bytes)

        def create_execution_context(self):
            """None when the activation memory cannot be allocated (createExecutionContext is noexcept and returns
            nullptr; include/NvInferRuntime.h @ v10.3.0, kSTATIC allocation)."""
            rec("trt.create_execution_context")
            if gpu.free_memory is not None and gpu.free_memory < self._activation_bytes():
                log(self._runtime._logger, ILogger.ERROR, "Requested amount of GPU memory "
                    f"({self._activation_bytes()} bytes) could not be allocated. There may not be enough free "
                    "memory for allocation to succeed.")
                return None
            return IExecutionContext(self)

        if release.bindings_api:
            num_bindings = property(lambda self: len(self._io))

            def get_binding_index(self, name):
                return self._io.index(name)

        def __del__(self):
            rec("trt.engine-destroyed")

    class Runtime(_Bound):
        _settable = frozenset({"DLA_core"})

        def __init__(self, logger):
            self._logger = logger
            object.__setattr__(self, "DLA_core", -1)
            rec("trt.Runtime")

        def deserialize_cuda_engine(self, data):
            rec("trt.deserialize_cuda_engine", self.DLA_core)
            try:
                plan = json.loads(bytes(data))
            except ValueError:
                log(self._logger, ILogger.ERROR, "The engine plan file is corrupted")
                return None
            if plan["tensorrt"] != release.version:
                log(self._logger, ILogger.ERROR, "The engine plan file is not compatible with this version of "
                    f"TensorRT, expecting library version {release.version} got {plan['tensorrt']}")
                return None
            if plan["gpu"] != [gpu.name, list(gpu.compute_capability), gpu.sm_count]:
                log(self._logger, ILogger.ERROR, "The engine plan file is generated on an incompatible device")
                return None
            return ICudaEngine(self, plan)

        def __del__(self):
            rec("trt.runtime-destroyed")

    trt.Runtime = Runtime
    trt._registry = registry
    if release.plugins == "aot":
        trt.plugin = make_plugin_module(trt, registry, rec)
    return trt


@dataclass
class Installed:
    """What `install` put in place: the fake GPU and modules, for assertions."""

    gpu: FakeGpu
    trt: types.ModuleType
    release: Release
    cuda: types.ModuleType | None = None
    pycuda: types.ModuleType | None = None
    extra: dict = field(default_factory=dict)


def install(monkeypatch, release: str, binding: str = "cuda-python-12", gpu: FakeGpu | None = None,
            driver_ok: bool = True) -> Installed:
    """Put a fake TensorRT `release` and CUDA `binding` ("cuda-python-11", "cuda-python-12", "cuda-python-13",
    "pycuda", "cuda-python-13+pycuda" where the cuda-python one cannot reach the driver) in sys.modules,
    hiding any real one, and clear the runtime's cached TensorRT probe."""



    gpu = gpu or FakeGpu()
    rel = RELEASES[release]
    trt = make_tensorrt(rel, gpu)
    for name in [m for m in sys.modules if m == "tensorrt" or m.startswith("tensorrt.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", getattr(trt, "plugin", None))
    for name in ("cuda", "cuda.cudart", "cuda.bindings", "cuda.bindings.runtime", "cuda.bindings.utils", "pycuda",
                 "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)       # None: `import name` raises ImportError
    installed = Installed(gpu, trt, rel)
    if binding.startswith("cuda-python"):
        major = int(binding.split("-")[2].split("+")[0])
        rt = make_cudart(gpu, major, driver_ok=driver_ok and "+pycuda" not in binding)
        names = ("cuda", "cuda.cudart") if major == 11 else ("cuda", "cuda.bindings", "cuda.bindings.runtime")
        for name in names[:-1]:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        monkeypatch.setitem(sys.modules, names[-1], rt)
        if major >= 13:                                    # cuda.bindings.utils: cuda-bindings 12.9.1 and 13.x
            monkeypatch.setitem(sys.modules, "cuda.bindings.utils", make_utils())
        installed.cuda = rt
    if binding.endswith("pycuda"):
        drv = make_pycuda(gpu, driver_ok=driver_ok)
        pkg = types.ModuleType("pycuda")
        pkg.driver = drv
        monkeypatch.setitem(sys.modules, "pycuda", pkg)
        monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
        installed.pycuda = drv
    versions._cached_probe.cache_clear()     # the caller's fixture clears it again afterwards
    return installed
