"""A fake `tensorrt.plugin` (TensorRT ≥ 10.9) that behaves as NVIDIA's Python package implements it, and the
part of TensorRT's builder that drives a quickly deployable ahead-of-time plugin.

Every rule names its source in NVIDIA/TensorRT, under `python/packaging/bindings_wheel/tensorrt/plugin/`
(written `tensorrt/plugin/…` below) or `python/src/infer/pyPlugin.cpp`, at the tag given. The code here is
written for this fake; nothing is copied. `PLUGIN_RULES` lists the rules `test_tensorrt_fake.py` pins.

The builder side (`build_aot_plugin`) calls the plugin's functions with its own arguments and in its own order,
as `_TemplateAOTPlugin` (tensorrt/plugin/_plugin_class.py @ v10.9.0) does when TensorRT calls the IPluginV3
methods: get_output_data_types → the register function on *dummy* shape expressions; get_output_shapes → the
register function again on *real* expressions; get_supported_format_combinations (called twice, by
getNbSupportedFormatCombinations and getSupportedFormatCombinations) → the autotune function; configure_plugin;
get_valid_tactics; get_launch_params → the aot_impl function; get_kernel.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

#: The rules this fake implements, each with its source; test_tensorrt_fake.py has one test per entry.
PLUGIN_RULES = {
    "pos-iterable": "tensorrt/plugin/_autotune.py @ v10.9.0, v10.16, v11.1: AutoTuneCombination.pos runs "
                    "max(pos) and `for p in pos` (a bare int raises TypeError)",
    "pos-once": "tensorrt/plugin/_autotune.py @ v10.9.0: a position given twice raises ValueError",
    "combinations": "tensorrt/plugin/_autotune.py @ v10.9.0: '|' ties positions together, '*' multiplies",
    "exception-is-failure": "python/src/infer/pyPlugin.cpp @ v10.9.0: an exception in "
                            "get_supported_format_combinations makes getNbSupportedFormatCombinations return -1",
    "register-twice": "tensorrt/plugin/_plugin_class.py @ v10.9.0: register runs in get_output_data_types on "
                      "dummy ShapeExprs, then in get_output_shapes on real ones",
    "dummy-not-constant": "tensorrt/plugin/_tensor.py @ v10.9.0: is_constant of a fake ShapeExpr raises",
    "symbolic": "tensorrt/plugin/_tensor.py @ v10.9.0: SymInt32/ShapeExpr arithmetic builds IDimensionExprs "
                "through the IExprBuilder; == gives an expression, not a bool",
    "no-bool": "tensorrt/plugin/_tensor.py @ v10.16: bool() of a non-constant expression raises",
    "builder-scoped": "tensorrt/plugin/_plugin_class.py @ v10.16: the IExprBuilder is set only inside "
                      "get_output_shapes and get_launch_params",
    "cdiv": "tensorrt/plugin/_top_level.py @ v10.16: cdiv of two ints raises; otherwise a CEIL_DIV expression",
    "launch-params": "tensorrt/plugin/_tensor.py @ v10.9.0: KernelLaunchParams wraps every field in SymInt32 and "
                     "refuses other attributes",
    "aot-args": "tensorrt/plugin/_plugin_class.py @ v10.9.0: aot_impl gets the inputs, every attribute in order, "
                "the outputs and the tactic; its results are type-checked and every extra arg must be a SymInt32",
    "schemas": "tensorrt/plugin/_validate.py @ v10.9.0: register needs annotations; autotune and aot_impl "
               "parameter names must follow the register schema",
}


class DimensionOperation(enum.Enum):
    """trt.DimensionOperation (NvInferRuntime.h)."""

    SUM, PROD, MAX, MIN, SUB, EQUAL, LESS, FLOOR_DIV, CEIL_DIV = range(9)


_FOLD: dict[DimensionOperation, Callable[[int, int], int]] = {
    DimensionOperation.SUM: lambda a, b: a + b, DimensionOperation.PROD: lambda a, b: a * b,
    DimensionOperation.MAX: max, DimensionOperation.MIN: min, DimensionOperation.SUB: lambda a, b: a - b,
    DimensionOperation.EQUAL: lambda a, b: int(a == b), DimensionOperation.LESS: lambda a, b: int(a < b),
    DimensionOperation.FLOOR_DIV: lambda a, b: a // b, DimensionOperation.CEIL_DIV: lambda a, b: -(-a // b),
}


@dataclass(frozen=True)
class DimExpr:
    """trt.IDimensionExpr: a build-time constant or a value known only when the engine runs (`text` names it)."""

    text: str
    value: Optional[int] = None

    def is_constant(self) -> bool:
        return self.value is not None

    def get_constant_value(self) -> int:
        if self.value is None:
            raise RuntimeError(f"{self.text} is not a build-time constant")
        return self.value


class ExprBuilder:
    """trt.IExprBuilder: constants and operations; two constants fold into a constant (IDimensionExpr.isConstant)."""

    def constant(self, value: int) -> DimExpr:
        return DimExpr(str(value), int(value))

    def operation(self, op: DimensionOperation, a: DimExpr, b: DimExpr) -> DimExpr:
        if not isinstance(a, DimExpr) or not isinstance(b, DimExpr):
            raise TypeError(f"IExprBuilder.operation(): incompatible arguments {a!r}, {b!r}")
        if a.is_constant() and b.is_constant():
            return self.constant(_FOLD[op](a.value, b.value))
        return DimExpr(f"{op.name.lower()}({a.text}, {b.text})")


class TensorFormat(enum.Enum):
    LINEAR, CHW2, HWC8, CHW4, CHW16, CHW32, HWC = range(7)


def make_plugin_module(trt: Any, registry: dict, record: Callable[..., None]) -> Any:
    """`tensorrt.plugin` bound to the fake `trt` module; registrations land in `registry` (id → PluginDef)."""

    trtp = types.ModuleType("tensorrt.plugin")

    # ---------------------------------------------------------------- symbolic expressions (_tensor.py)
    class SymExpr:
        """Base of every symbolic expression (tensorrt/plugin/_tensor.py @ v10.9.0)."""

    class SymIntExpr(SymExpr):
        # builder-scoped: set by the plugin only inside get_output_shapes / get_launch_params (@ v10.16 it is reset
        # to None after each; @ v10.9.0 it stayed set, which no code may rely on).
        _exprBuilder: Optional[ExprBuilder] = None

        def __init__(self, value: Any = None):
            self._int_expr: Optional[DimExpr] = None
            if isinstance(value, int):      # symbolic: a constant needs the builder; without it, no expression
                builder = SymIntExpr._exprBuilder
                self._int_expr = None if builder is None else builder.constant(value)
            elif isinstance(value, DimExpr):
                self._int_expr = value
            elif isinstance(value, SymIntExpr):
                self._int_expr = value._int_expr

        def _op(self, op: DimensionOperation, other: Any) -> Any:
            if isinstance(other, int):
                other = SymIntExpr(other)
            # symbolic: the builder makes the expression (AttributeError on None outside a shape context)
            return SymIntExpr(SymIntExpr._exprBuilder.operation(op, self._expr, other._expr))

        def __add__(self, other: Any) -> Any:
            return self._op(DimensionOperation.SUM, other)

        def __sub__(self, other: Any) -> Any:
            return self._op(DimensionOperation.SUB, other)

        def __mul__(self, other: Any) -> Any:
            return self._op(DimensionOperation.PROD, other)

        def __floordiv__(self, other: Any) -> Any:
            return self._op(DimensionOperation.FLOOR_DIV, other)

        def __eq__(self, other: Any) -> Any:   # symbolic: an EQUAL expression, never a Python bool
            return self._op(DimensionOperation.EQUAL, other)

        def __lt__(self, other: Any) -> Any:
            return self._op(DimensionOperation.LESS, other)

        __hash__ = None

        def __bool__(self) -> bool:            # no-bool (@ v10.16)
            if not self.is_constant:
                raise RuntimeError("Cannot evaluate symbolic expression as boolean. "
                                   "Use is_constant and constant_value() for conditional checks.")
            return bool(self._expr.get_constant_value())

        @property
        def is_constant(self) -> bool:
            return self._expr.is_constant()

        def constant_value(self) -> int:
            if not self.is_constant:
                raise RuntimeError("Not accessible for non-constant integer expressions.")
            return self._expr.get_constant_value()

        @property
        def _expr(self) -> Optional[DimExpr]:
            return self._int_expr

        def __repr__(self) -> str:
            return f"{type(self).__name__}[{self._int_expr.text if self._int_expr else '?'}]"

    class SymInt32(SymIntExpr):
        def __call__(self) -> _SymExprImpl:
            return _SymExprImpl(self)

    @dataclass
    class _SymExprImpl:
        """What `SymInt32()` hands TensorRT (SymExprImpl: the expression and its type)."""

        sym: SymIntExpr
        expr: Optional[DimExpr] = field(init=False)

        def __post_init__(self) -> None:
            self.expr = self.sym._expr

    class ShapeExpr(SymInt32):
        def __init__(self, value: Any = None):
            super().__init__(value)
            dummy_int = isinstance(value, int) and SymIntExpr._exprBuilder is None
            self._is_dummy = value is None or dummy_int or (isinstance(value, ShapeExpr) and value._is_dummy)

        def _op(self, op: DimensionOperation, other: Any) -> Any:
            if self._is_dummy:                  # arithmetic on a fake expression stays fake
                return ShapeExpr()
            return ShapeExpr(super()._op(op, other))

        def __bool__(self) -> bool:
            if self._is_dummy:
                raise RuntimeError("Cannot evaluate fake ShapeExpr as boolean. Check is_fake first.")
            return super().__bool__()

        @property
        def is_fake(self) -> bool:
            return self._is_dummy

        @property
        def is_constant(self) -> bool:         # dummy-not-constant
            if self._is_dummy:
                raise RuntimeError("Not accessible for fake 'ShapeExpr's. Check is_fake to determine accessibility.")
            return super().is_constant

        def constant_value(self) -> int:
            if not self.is_constant:
                raise RuntimeError("Not accessible for non-constant shape expressions.")
            return super().constant_value()

        def _clone(self) -> Any:
            out = ShapeExpr(self + 0)
            out._is_dummy = self._is_dummy
            return out

    def _from_scalar(value: Any) -> Any:
        if isinstance(value, int):
            return SymInt32(value)
        raise ValueError(f"Unsupported type: '{type(value)}'")

    class SymExprs:
        def __init__(self, length: int):
            self._length = length
            self._exprs: list = [None] * length

        @classmethod
        def from_tuple(cls, exprs: Iterable[Any]) -> Any:
            items = [e if isinstance(e, SymExpr) else _from_scalar(e) for e in exprs]
            out = cls(len(items))
            out._exprs = items
            return out

        def __iter__(self):
            return iter(self._exprs)

        def __getitem__(self, index: int) -> Any:
            return self._exprs[index]

        def __len__(self) -> int:
            return self._length

    class ShapeExprs(SymExprs):
        def __init__(self, length: int, _is_dummy: bool = False):
            super().__init__(length)
            self._is_dummy = _is_dummy
            if _is_dummy:
                self._exprs = [ShapeExpr() for _ in range(length)]

        @classmethod
        def from_tuple(cls, exprs: Iterable[Any]) -> Any:
            items = [e if isinstance(e, ShapeExpr) else ShapeExpr(e) for e in exprs]
            out = cls(len(items))
            out._exprs = items
            return out

        def _clone(self) -> Any:
            out = ShapeExprs.from_tuple(e._clone() for e in self._exprs)
            out._is_dummy = self._is_dummy
            return out

    class SymIntExprs(SymExprs):
        @classmethod
        def from_tuple(cls, exprs: Iterable[Any]) -> Any:
            items = [e if isinstance(e, SymIntExpr) else SymIntExpr(e) for e in exprs]
            out = cls(len(items))
            out._exprs = items
            return out

    class TensorDesc:
        """Shape expressions and type always; `shape`/`format` only where TensorRT has them (autotune, launch)."""

        def __init__(self, shape_expr: Any = None, dtype: Any = None):
            self._shape_expr, self._dtype = shape_expr, dtype
            self._shape = self._format = None
            self._aliased_to = None
            self._immutable = False

        def __setattr__(self, name: str, value: Any) -> None:
            if getattr(self, "_immutable", False) and name != "_immutable":
                raise ValueError("Cannot modify immutable TensorDesc properties")
            object.__setattr__(self, name, value)

        shape_expr = property(lambda self: self._shape_expr)
        dtype = property(lambda self: self._dtype)
        has_shape = property(lambda self: self._shape is not None)

        @property
        def shape(self) -> tuple:
            if self._shape is None:
                raise ValueError("TensorDesc has no shape information available at this stage.")
            return self._shape

        @property
        def format(self) -> Any:
            if self._shape is None:
                raise ValueError("TensorDesc has no shape information available at this stage.")
            return self._format

        def _clone(self) -> Any:
            out = TensorDesc()
            out.__dict__.update(self.__dict__)
            object.__setattr__(out, "_shape_expr", self._shape_expr._clone())
            object.__setattr__(out, "_immutable", True)
            return out

        def like(self) -> Any:
            out = self._clone()
            out._immutable = False
            return out

        def aliased(self) -> Any:
            out = self.like()
            out._aliased_to = self
            out._immutable = True
            return out

        def get_aliased(self) -> Any:
            return self._aliased_to

    def from_shape_expr(shape_expr: Any, dtype: Any) -> Any:
        exprs = ShapeExprs.from_tuple(shape_expr) if isinstance(shape_expr, tuple) else shape_expr
        return TensorDesc(exprs, dtype)

    def cdiv(first: Any, second: Any) -> Any:
        if isinstance(first, int):
            if isinstance(second, int):
                raise ValueError("Both arguments cannot be 'int's")
            first = ShapeExpr(first)
        return first._op(DimensionOperation.CEIL_DIV, second)

    LAUNCH_FIELDS = ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "shared_mem")

    class KernelLaunchParams:
        def __init__(self, grid_x: Any = 1, grid_y: Any = 1, grid_z: Any = 1, block_x: Any = 1, block_y: Any = 1,
                     block_z: Any = 1, shared_mem: Any = 0):
            for name, value in zip(LAUNCH_FIELDS, (grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_mem)):
                setattr(self, name, value)

        def __setattr__(self, name: str, value: Any) -> None:
            if name not in LAUNCH_FIELDS:
                raise AttributeError(f"KernelLaunchParams object has no attribute '{name}'")
            self.__dict__[name] = SymInt32(value)

    # ---------------------------------------------------------------- autotune (_autotune.py)
    def data_type(name: str) -> Any:
        """tensorrt/plugin/_utils.py @ v10.9.0, _str_to_data_type."""
        if name == "FP32":
            return trt.DataType.FLOAT
        if name == "FP16":
            return trt.DataType.HALF
        return getattr(trt.DataType, name)

    class AutoTuneCombination:
        def __init__(self, io_types: Optional[str] = None, layouts: Optional[str] = None,
                     tactics: Optional[Iterable[int]] = None):
            self.io_types: list = [s.strip() for s in io_types.split(",")] if io_types else []
            lay = [s.strip() for s in (layouts or "LINEAR").split(",")] if io_types else []
            self.layouts: list = lay * len(self.io_types) if len(lay) == 1 else lay
            self._tactics = tactics

        def pos(self, pos: Iterable[int], io_types: str, layouts: str = "LINEAR") -> None:
            top = max(pos)                      # pos-iterable: TypeError for an int
            if top >= len(self.io_types):
                grow = top + 1 - len(self.io_types)
                self.io_types.extend([None] * grow)
                self.layouts.extend([None] * grow)
            for p in pos:
                if self.io_types[p] is not None:            # pos-once
                    raise ValueError(f"Type(s) for position {p} already specified")
                if self.layouts[p] is not None:
                    raise ValueError(f"Layout(s) for position {p} already specified")
                self.io_types[p], self.layouts[p] = io_types, layouts

        def tactics(self, tactics: Iterable[int]) -> None:
            self._tactics = tactics

        def _get_combinations(self) -> list[tuple[tuple, tuple, Optional[frozenset]]]:
            tactics = None if self._tactics is None else frozenset(self._tactics)
            return [(tuple(data_type(t) for t in types), tuple(getattr(TensorFormat, f) for f in formats), tactics)
                    for types in one_sided(self.io_types) for formats in one_sided(self.layouts)]

    # ---------------------------------------------------------------- decorators (_lib.py, _validate.py)
    serializable = (int, float, bytes, bool, str)
    disallowed = {"outputs", "stream", "tactic"}

    def register(plugin_id: str, lazy_register: bool = False) -> Callable:
        def wrap(fn: Callable) -> Callable:
            namespace, name = plugin_id.split("::")
            if namespace in {"", "trt", "tensorrt", "std"} or "." in namespace + name:
                raise ValueError(f"Provided namespace {namespace} is a reserved namespace")
            if plugin_id in registry:
                raise ValueError(f"'_Op' already has a defintion for '{name}'")
            sig = inspect.signature(fn)
            tensors, attrs = [], {}
            for index, (arg, param) in enumerate(sig.parameters.items()):
                if param.annotation is inspect.Parameter.empty:
                    raise ValueError(f"Argument {arg} does not have a type annotation.")
                if param.default is not inspect.Parameter.empty:
                    raise ValueError(f"Argument {arg} has a default value. Default values are not supported yet.")
                if inspect.isclass(param.annotation) and issubclass(param.annotation, TensorDesc):
                    if attrs:
                        raise ValueError("TensorDescs args and attribute args cannot be interspersed.")
                    tensors.append(arg)
                    continue
                if index == 0:
                    raise ValueError("TensorDescs args should come first, followed by attributes.")
                if arg in disallowed:
                    raise ValueError(f"'{arg}' is not allowed as a plugin attribute name.")
                if param.annotation not in serializable:
                    raise ValueError(f"Attribute '{arg}' of type {param.annotation} is not a supported type.")
                attrs[arg] = param.annotation
            ret = sig.return_annotation
            if ret is inspect.Parameter.empty:
                raise ValueError(f"No return annotation found for register function. Received signature {sig}.")
            outs = typing.get_args(ret) if typing.get_origin(ret) is tuple else (ret,)
            if not all(inspect.isclass(o) and issubclass(o, TensorDesc) for o in outs):
                raise ValueError(f"Return argument is of type {ret}. Return types can only be TensorDesc or "
                                 "Tuple[TensorDesc].")
            registry[plugin_id] = PluginDef(plugin_id, fn, tuple(tensors), attrs, len(outs))
            return fn
        return wrap

    def need(plugin_id: str) -> PluginDef:
        if plugin_id not in registry:
            raise ValueError(f"Plugin {plugin_id} is not registered. Did you register it with "
                             "tensorrt.plugin.register API?")
        return registry[plugin_id]

    def follows_schema(fn: Callable, definition: PluginDef, tail: tuple[str, ...], what: str) -> tuple[str, ...]:
        """The attribute names `fn` takes, after checking its parameter names against the register schema."""
        names = list(inspect.signature(fn).parameters)
        chosen = tuple(n for n in definition.attrs if n in names)
        expected = [*definition.tensors, *chosen, *tail]
        if names != expected:
            raise ValueError(f"Signature of the {what} function ({', '.join(names)}) does not match the expected "
                             f"input arg schema: ({', '.join(expected)})")
        return chosen

    def autotune(plugin_id: str) -> Callable:
        def wrap(fn: Callable) -> Callable:
            definition = need(plugin_id)
            definition.autotune = fn
            definition.autotune_attrs = follows_schema(fn, definition, ("outputs",), "autotune")
            return fn
        return wrap

    def aot_impl(plugin_id: str) -> Callable:
        def wrap(fn: Callable) -> Callable:
            definition = need(plugin_id)
            sig = inspect.signature(fn)
            follows_schema(fn, definition, ("outputs", "tactic"), "aot_impl")
            ret = sig.return_annotation
            if ret is inspect.Parameter.empty:
                raise ValueError(f"No return annotation found for aot_impl function. Received signature {sig}.")
            args = typing.get_args(ret)
            if typing.get_origin(ret) is not tuple or len(args) != 4:
                raise ValueError(f"Return annotation is {ret}. Expected tuple[str | bytes, str | bytes, "
                                 "tensorrt.plugin.KernelLaunchParams, tensorrt.plugin.SymIntExprs].")
            for index in (0, 1):
                if any(a not in (str, bytes) for a in (typing.get_args(args[index]) or (args[index],))):
                    raise ValueError(f"Return annotation for argument at {index} is '{args[index]}'.")
            if not (inspect.isclass(args[2]) and issubclass(args[2], KernelLaunchParams)):
                raise ValueError(f"Argument at index 2 of return annotation is '{args[2]}'.")
            if not (inspect.isclass(args[3]) and issubclass(args[3], SymExprs)):
                raise ValueError(f"Argument at index 3 of return annotation is '{args[3]}'.")
            definition.aot_impl = fn
            return fn
        return wrap

    for obj in (SymExpr, SymIntExpr, SymInt32, ShapeExpr, SymExprs, ShapeExprs, SymIntExprs, TensorDesc,
                KernelLaunchParams, AutoTuneCombination):
        setattr(trtp, obj.__name__, obj)
    trtp.from_shape_expr, trtp.cdiv = from_shape_expr, cdiv
    trtp.register, trtp.autotune, trtp.aot_impl = register, autotune, aot_impl
    trtp._record = record
    return trtp


def one_sided(variants: list) -> list[list[str]]:
    """Type (or format) rows for one combination: "A|B" at several positions ties them (row k takes the k-th
    choice everywhere); "A*B" at one position multiplies the rows (tensorrt/plugin/_autotune.py @ v10.9.0)."""
    width = 0
    for v in variants:                       # a position left unset (None) fails here, as NVIDIA's split does
        choices = v.split("|")
        if len(choices) > 1:
            if "*" in v:
                raise ValueError(f"Type/Format '{v}' contains both '|' and '*'")
            if width > 1 and width != len(choices):
                raise ValueError(f"Type/Format combinations {variants} contain illegal dependent lengths")
        width = max(width, len(choices))
    rows = [[v.split("|")[k] if "|" in v else v.split("*")[0] for v in variants] for k in range(width)]
    for j, v in enumerate(variants):
        for option in v.split("*")[1:] if "*" in v else ():
            rows += [row[:j] + [option] + row[j + 1:] for row in list(rows)]
    return rows


@dataclass
class PluginDef:
    """What `tensorrt.plugin.register` & co. recorded for one plugin (tensorrt/plugin/_lib.py, PluginDef)."""

    plugin_id: str
    register: Callable
    tensors: tuple[str, ...]
    attrs: dict                        # name → annotation, in the register function's order
    num_outputs: int
    autotune: Optional[Callable] = None
    autotune_attrs: tuple[str, ...] = ()
    aot_impl: Optional[Callable] = None


class PluginBuildError(RuntimeError):
    """What TensorRT logs when a plugin callback fails; the build then returns no engine."""


@dataclass(frozen=True)
class PluginInput:
    """One plugin input as the network has it: dims (-1 where the batch goes) and TensorRT type."""

    name: str
    dims: tuple[int, ...]
    dtype: Any


def _dim(d: int) -> DimExpr:
    return DimExpr("B") if d == -1 else DimExpr(str(d), d)


def build_aot_plugin(trtp: Any, definition: PluginDef, attrs: dict, inputs: list[PluginInput],
                     opt_batch: int) -> dict:
    """Drive one AOT plugin layer the way TensorRT's builder does (see the module doc); returns what the engine
    holds (kernel name, launch expressions, extra args) or raises PluginBuildError with what TensorRT logs."""
    rec = trtp._record
    sym = trtp.SymIntExpr

    def scoped(call: Callable[[], Any]) -> Any:          # builder-scoped
        sym._exprBuilder = ExprBuilder()
        try:
            return call()
        finally:
            sym._exprBuilder = None

    def failing(what: str, call: Callable[[], Any]) -> Any:   # exception-is-failure
        try:
            return call()
        except Exception as exc:
            raise PluginBuildError(f"[ERROR] Exception thrown from {what}() {type(exc).__name__}: {exc}") from exc

    def descs(shape_exprs: Callable[[PluginInput], Any]) -> list:
        out = []
        for i in inputs:
            d = trtp.TensorDesc(shape_exprs(i), i.dtype)
            d._immutable = True
            out.append(d)
        return out

    # get_output_data_types: register on dummy expressions
    dummy = descs(lambda i: trtp.ShapeExprs(len(i.dims), _is_dummy=True))
    rec("plugin.register", "dummy")
    outputs = failing("get_output_data_types", lambda: definition.register(*dummy, **attrs))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    out_types = [o.dtype for o in outputs]

    # get_output_shapes: register on real expressions
    real = descs(lambda i: trtp.ShapeExprs.from_tuple(trtp.ShapeExpr(_dim(d)) for d in i.dims))
    rec("plugin.register", "real")
    outputs = failing("get_output_shapes", lambda: scoped(lambda: definition.register(*real, **attrs)))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for o in outputs:
        if any(e._expr is None for e in o.shape_expr):
            raise PluginBuildError("[ERROR] get_output_shapes() returned an output dimension without an expression")
    concrete = {-1: opt_batch}

    def with_shapes(ds: list, dims: list[tuple]) -> None:
        for d, shape in zip(ds, dims):
            d._immutable = False
            d._shape, d._format = tuple(concrete.get(x, x) for x in shape), TensorFormat.LINEAR
            d._immutable = True

    with_shapes(real, [i.dims for i in inputs])
    with_shapes(list(outputs), [tuple(-1 if not e.is_constant else e.constant_value() for e in o.shape_expr)
                                for o in outputs])

    # getNbSupportedFormatCombinations, then getSupportedFormatCombinations: autotune twice
    combos: list = []
    values = [attrs[n] for n in definition.autotune_attrs]
    for _ in range(2):
        rec("plugin.autotune")
        if definition.autotune is None:
            combos = [(tuple(i.dtype for i in inputs) + tuple(out_types), None, None)]
            continue
        listed = failing("get_supported_format_combinations",
                         lambda: definition.autotune(*real, *values, list(outputs)))
        combos = [c for comb in listed for c in failing("get_supported_format_combinations",
                                                         comb._get_combinations)]

    # format selection: the combination whose input types are the network's (no reformat layers in our graphs)
    want = tuple(i.dtype for i in inputs)
    chosen = next((c for c in combos if c[0][:len(inputs)] == want), None)
    if chosen is None:
        raise PluginBuildError(f"[ERROR] {definition.plugin_id}: no supported format combination for input types "
                               f"{[t.name for t in want]} (offered {[[t.name for t in c[0]] for c in combos]})")
    tactic = min(chosen[2]) if chosen[2] else 0

    # get_launch_params: aot_impl with every attribute in order, the outputs and the tactic
    rec("plugin.aot_impl", [t.name for t in chosen[0]])
    all_attrs = list(attrs.values())
    result = failing("get_launch_params",
                     lambda: scoped(lambda: definition.aot_impl(*real, *all_attrs, list(outputs), tactic)))
    name, ptx, params, extra = result
    if not isinstance(name, (str, bytes)) or not isinstance(ptx, (str, bytes)):
        raise PluginBuildError("[ERROR] Kernel name and PTX/CUBIN must be a 'str' or 'bytes'.")
    if not isinstance(params, trtp.KernelLaunchParams):
        raise PluginBuildError(f"[ERROR] Launch params must be a 'tensorrt.plugin.KernelLaunchParams'. "
                               f"Got: {type(params)}.")
    if not isinstance(extra, trtp.SymExprs):
        raise PluginBuildError(f"[ERROR] Extra args must be a 'tensorrt.plugin.SymIntExprs'. Got: {type(extra)}.")
    launch = {}
    for name_ in ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "shared_mem"):
        expr = getattr(params, name_)().expr
        if expr is None:
            raise PluginBuildError(f"[ERROR] launch parameter {name_} has no expression")
        launch[name_] = expr.text
    args = []
    for arg in extra:
        if not isinstance(arg, trtp.SymInt32):
            raise PluginBuildError(f"[ERROR] Extra args must be a 'tensorrt.plugin.SymInt32'. Got: {type(arg)}.")
        if arg().expr is None:
            raise PluginBuildError("[ERROR] an extra argument has no expression")
        args.append(arg().expr.text)
    return {"id": definition.plugin_id, "kernel": name if isinstance(name, str) else name.decode(),
            "types": [t.name for t in chosen[0]], "tactic": tactic, "launch": launch, "extra_args": args,
            "output_types": [t.name for t in out_types]}
