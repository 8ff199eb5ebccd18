"""Deployment side of the fused kernel: TensorRT plugin logic, PTX compilation, ONNX custom node."""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from edge_runtime.kernels import graph_attention_triton as kernels
from edge_runtime.kernels import trt_plugin
from slsg.ops import graph_attention_fused, onnx_plugin


def test_kernel_module_imports_without_torch():
    code = ("import sys; import edge_runtime.kernels.graph_attention_triton, edge_runtime.kernels.trt_plugin; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0", "10.8.0.43"])
def test_old_tensorrt_is_refused_with_the_way_out(version):
    with pytest.raises(trt_plugin.PluginUnavailableError, match=r">= 10\.9.*without --fused-graph-attention"):
        trt_plugin.check_tensorrt_version(version)


@pytest.mark.parametrize("version", ["10.9.0.34", "10.13.2", "11.0.0"])
def test_recent_tensorrt_is_accepted(version):
    trt_plugin.check_tensorrt_version(version)


def test_unreadable_version_is_an_error():
    with pytest.raises(ValueError, match="cannot read"):
        trt_plugin.parse_version("unknown")


def test_output_shapes_and_signature():
    assert trt_plugin.output_shapes((2, 512, 256)) == [(2, 512, 256), (2, 512, 256), (2, 256, 9)]
    assert trt_plugin.output_shapes((1, 8, 64), k=9, dilation=1)[2] == (1, 64, 9)
    with pytest.raises(ValueError, match=r"\(B, C, N\)"):
        trt_plugin.output_shapes((2, 512, 16, 16))
    sig = trt_plugin.aot_signature("fp16")
    assert list(sig)[:10] == ["h_ptr", "q_ptr", "v_ptr", "rel_ptr", "C", "CQ", "N", "mr_ptr", "ctx_ptr", "idx_ptr"]
    assert sig["h_ptr"] == "*fp16" and sig["rel_ptr"] == "*fp32" and sig["idx_ptr"] == "*i32"
    with pytest.raises(ValueError, match="fp32 and fp16"):
        kernels.aot_signature("bf16")


def test_launch_grid_covers_dense_blocks_and_the_knn_program():
    tiles = kernels.TileConfig()
    assert kernels.grid(8, 512, 256, tiles) == (256 // tiles.block_m, 512 // tiles.block_d + 1, 8)
    with pytest.raises(ValueError, match="power of two"):
        kernels.TileConfig(block_m=24)
    with pytest.raises(ValueError, match="at least k=27"):
        kernels.check_problem(16, 27, 3)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_register_plugin_without_tensorrt_says_what_to_do():
    with pytest.raises(trt_plugin.PluginUnavailableError, match="TensorRT >= 10.9"):
        trt_plugin.register_plugin()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="Triton runs as its interpreter here")
def test_kernel_compiles_to_ptx_for_jetson_orin():
    backends = pytest.importorskip("triton.backends.compiler")
    compiled = trt_plugin.compile_kernel("fp16", target=backends.GPUTarget("cuda", 87, 32))
    assert compiled.name == "graph_attention_kernel"
    assert ".entry graph_attention_kernel" in compiled.ptx and ".target sm_87" in compiled.ptx
    assert compiled.num_warps == kernels.TileConfig().num_warps


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("rel", -torch.rand(32, 32))

    def forward(self, h, q, v):
        max_relative, context = graph_attention_fused(h, q, v, self.rel)
        return max_relative + context


def test_fused_onnx_export_emits_one_plugin_node():
    onnx = pytest.importorskip("onnx")
    args = (torch.randn(1, 8, 32), torch.randn(1, 4, 32), torch.randn(1, 8, 32))
    program = torch.onnx.export(_Block().eval(), args, dynamo=True, verbose=False,
                                custom_translation_table=onnx_plugin.fused_translation_table())
    model = program.model_proto
    onnx.checker.check_model(model)
    (node,) = onnx_plugin.fused_nodes(model)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"k": 27, "dilation": 3, "plugin_namespace": b"slsg"}
    assert node.op_type == trt_plugin.PLUGIN_NAME and onnx_plugin.PLUGIN_NAMESPACE == trt_plugin.PLUGIN_NAMESPACE
    assert ("slsg", 1) in {(o.domain, o.version) for o in model.opset_import}
