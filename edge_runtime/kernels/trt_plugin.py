"""TensorRT ahead-of-time plugin `slsg::GraphAttention` running the fused Triton kernel.

TensorRT ≥ 10.9 embeds the PTX returned by `aot_impl` in the engine, so no Python runs at inference.
The ONNX node the exporter writes (`slsg.ops.onnx_plugin`) has op type "GraphAttention" and the string
attribute plugin_namespace="slsg", which is how the TensorRT ONNX parser finds this plugin.

I/O (positions as TensorRT counts them): inputs 0 h (B, C, N), 1 q (B, CQ, N), 2 v (B, C, N) — float32 or
float16, all alike — and 3 rel_pos (N, N) float32; outputs 4 max_relative (B, C, N), 5 context (B, C, N)
in the input type, 6 neighbours (B, N, NB) int32. Attributes k (27) and dilation (3) are baked into
the compiled kernel as constants (TensorRT does not serialize AOT plugin attributes).

`tensorrt` is imported only inside `register_plugin`, so the shape/type logic here is testable anywhere.
This module is needed to *build* an engine (registration + the Triton compile); an engine built with it runs
without it, without Triton and without Python plugins ("Loading and running a TRT engine containing an AOT
plugin", NVIDIA/TensorRT samples/python/quickly_deployable_plugins/README.md).

No `from __future__ import annotations` here: `tensorrt.plugin` validates the decorated functions' real
annotation objects (`tensorrt/plugin/_validate.py`), which postponed (string) annotations would break.
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union  # noqa: UP035 (TensorRT reads these hints at registration)

from edge_runtime.errors import SlsgError
from edge_runtime.kernels import graph_attention_triton as kernels
from edge_runtime.kernels.tiles import PLUGIN_TILES

PLUGIN_NAMESPACE = "slsg"
PLUGIN_NAME = "GraphAttention"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"
MIN_TENSORRT = (10, 9)

# I/O positions per type choice. AutoTuneCombination.pos takes an iterable of positions — it runs max(pos) and
# `for p in pos` (tensorrt/plugin/_autotune.py, 10.9 to 11.1) — so each group is a list, never a bare int
# (NVIDIA's own docstring example `c.pos(2, ...)` raises TypeError, and TensorRT then refuses the plugin).
FLOAT_POSITIONS = [0, 1, 2, 4, 5]  # h, q, v, max_relative, context: all float32 or all float16
REL_POS_POSITIONS = [3]
NEIGHBOURS_POSITIONS = [6]


class PluginUnavailableError(SlsgError, RuntimeError):
    """TensorRT (or a recent enough one) is missing; the standard-op ONNX graph is the way out."""


def parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"cannot read a TensorRT version from {text!r}")
    return int(match.group(1)), int(match.group(2))


def check_tensorrt_version(text: str) -> None:
    """Raise a message that names the fix when this TensorRT cannot host an AOT Python plugin."""
    if parse_version(text) < MIN_TENSORRT:
        need = ".".join(map(str, MIN_TENSORRT))
        raise PluginUnavailableError(
            f"the fused graph-attention plugin needs TensorRT >= {need} (ahead-of-time Python plugins); "
            f"this device has TensorRT {text}. Export without --fused-graph-attention to use standard ops."
        )


def output_shapes(h_shape: tuple[int, ...], k: int = kernels.DEFAULT_K,
                  dilation: int = kernels.DEFAULT_DILATION) -> list[tuple[int, ...]]:
    """Shapes of (max_relative, context, neighbours) for h of shape (B, C, N)."""
    if len(h_shape) != 3:
        raise ValueError(f"GraphAttention expects h as (B, C, N), got shape {tuple(h_shape)}")
    b, _, n = h_shape
    return [tuple(h_shape), tuple(h_shape), (b, n, kernels.neighbour_count(k, dilation))]


def kernel_dtype(is_float16: bool) -> str:
    return "fp16" if is_float16 else "fp32"


def aot_signature(dtype: str) -> dict[str, str]:
    """The kernel signature for this plugin: R is float32 whatever the activations are."""
    sig = kernels.aot_signature(dtype)
    sig["rel_ptr"] = "*fp32"
    return sig


DIVISIBILITY = 16  # what Triton's JIT assumes of 16-byte-aligned pointers and of ints divisible by 16


def alignment_attrs(signature: Dict[str, str],  # noqa: UP006 (evaluated at def time: Python 3.8)
                    int_values: Dict[str, Optional[int]]) -> Dict[tuple, list]:  # noqa: UP006
    """The specialisation Triton's JIT gives a launch on aligned tensors, written out for the AOT compile
    (`triton.backends.compiler.BaseBackend.get_tensor_specialization` / `get_int_specialization` with
    align=True, `parse_attr("D")`): every pointer is 16-byte aligned — TensorRT hands plugins addresses
    inside 256-byte-aligned device memory — and every int32 whose value is known at build time and
    divisible by 16 is marked so. Without these the PTX falls back to scalar 16-bit loads."""
    attrs = {}
    for i, (name, kind) in enumerate(signature.items()):
        value = int_values.get(name)
        aligned_int = kind == "i32" and value is not None and value % DIVISIBILITY == 0
        if kind.startswith("*") or aligned_int:
            attrs[(i,)] = [["tt.divisibility", DIVISIBILITY]]
    return attrs


def _known(expr) -> Optional[int]:
    """A TensorRT shape expression's value when it is fixed at build time (SLSG graphs: C, CQ, N are)."""
    try:
        if getattr(expr, "is_fake", False) or not expr.is_constant:
            return None
        return int(expr.constant_value())
    except (AttributeError, RuntimeError, TypeError):
        return None


@dataclass(frozen=True)
class CompiledKernel:
    name: str
    ptx: str
    num_warps: int
    shared_mem: int


def compile_kernel(dtype: str, k: int = kernels.DEFAULT_K, dilation: int = kernels.DEFAULT_DILATION,
                   tiles: kernels.TileConfig = kernels.TileConfig(),
                   target: Optional[object] = None,
                   int_values: Optional[Dict[str, Optional[int]]] = None) -> CompiledKernel:  # noqa: UP006
    """Compile the fused kernel to PTX with the JIT's alignment hints (Triton ≥ 3.3: `constexprs` and a
    dict of attrs); `int_values` are C, CQ, N when known; target (a triton GPUTarget) defaults to the GPU."""
    import triton

    signature = aot_signature(dtype)
    src = triton.compiler.ASTSource(fn=kernels.graph_attention_kernel, signature=signature,
                                    constexprs=kernels.constexprs(k, dilation, tiles),
                                    attrs=alignment_attrs(signature, int_values or {}))
    options = {"num_warps": tiles.num_warps}
    if target is None:
        compiled = triton.compile(src, options=options)
    else:
        compiled = triton.compile(src, target=target, options=options)
    meta = compiled.metadata
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise RuntimeError("the compiled graph-attention kernel needs Triton scratch memory, which a "
                           "TensorRT AOT plugin cannot provide; use smaller TileConfig blocks")
    return CompiledKernel(name=meta.name, ptx=compiled.asm["ptx"], num_warps=meta.num_warps,
                          shared_mem=meta.shared)


_registered = False


def register_plugin(tiles: kernels.TileConfig = PLUGIN_TILES) -> None:
    """Register `slsg::GraphAttention` with TensorRT (idempotent). Call before parsing the ONNX model. The
    engine cache key records PLUGIN_TILES (edge_runtime.kernels.identity): build with those."""
    global _registered
    if _registered:
        return
    try:
        import tensorrt as trt
        import tensorrt.plugin as trtp
    except ImportError as exc:
        raise PluginUnavailableError(
            "TensorRT with its Python plugin module is not installed; install TensorRT >= 10.9 or export "
            "without --fused-graph-attention"
        ) from exc
    check_tensorrt_version(trt.__version__)

    @trtp.register(PLUGIN_ID)
    def _describe(h: trtp.TensorDesc, q: trtp.TensorDesc, v: trtp.TensorDesc, rel_pos: trtp.TensorDesc,
                  k: int, dilation: int) -> Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:  # noqa: UP006
        shape = h.shape_expr
        neighbours = trtp.from_shape_expr((shape[0], shape[2], kernels.neighbour_count(k, dilation)),
                                          dtype=trt.int32)
        return h.like(), h.like(), neighbours

    @trtp.autotune(PLUGIN_ID)
    def _autotune(h, q, v, rel_pos, outputs) -> List[trtp.AutoTuneCombination]:  # noqa: UP006
        combination = trtp.AutoTuneCombination()
        combination.pos(FLOAT_POSITIONS, "FP32|FP16")
        combination.pos(REL_POS_POSITIONS, "FP32")
        combination.pos(NEIGHBOURS_POSITIONS, "INT32")
        return [combination]

    @trtp.aot_impl(PLUGIN_ID)
    def _aot_impl(h, q, v, rel_pos, k: int, dilation: int, outputs, tactic: int
                  ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:  # noqa: UP006, UP007
        shape, q_shape = h.shape_expr, q.shape_expr
        known = {"C": _known(shape[1]), "CQ": _known(q_shape[1]), "N": _known(shape[2])}
        compiled = compile_kernel(kernel_dtype(h.dtype == trt.float16), k, dilation, tiles, int_values=known)
        params = trtp.KernelLaunchParams()
        params.grid_x = trtp.cdiv(shape[2], tiles.block_m)
        params.grid_y = trtp.cdiv(shape[1], tiles.block_d) + 1
        params.grid_z = shape[0]
        params.block_x = compiled.num_warps * 32
        params.shared_mem = compiled.shared_mem
        # Scalars follow the inputs and precede the outputs, as the kernel declares them: C, CQ, N.
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(shape[1]), trtp.SymInt32(q_shape[1]),
                                             trtp.SymInt32(shape[2])])
        return compiled.name, compiled.ptx, params, extra

    _registered = True
