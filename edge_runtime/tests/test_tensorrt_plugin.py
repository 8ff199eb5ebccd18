"""The fused `slsg::GraphAttention` plugin: registered when a bundle needs it, only where TensorRT ≥ 10.9,
validated as tensorrt.plugin validates it, compiled with the JIT's alignment hints, and not needed (nor
Triton) to load the engine it went into."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
from rich.console import Console

from edge_runtime.tensorrt import BuildSettings, PluginUnsupported, TensorRTBackend, build_engine
from edge_runtime.tests.fakes.gpu import FakeGpu
from edge_runtime.tests.trt_bundles import PLUGIN_CN, make_trt_bundle

trt_plugin = pytest.importorskip("edge_runtime.kernels.trt_plugin", reason="needs triton (the kernels extra)")
RTX = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": (8, 9), "integrated": False, "sm_count": 128,
       "dla_cores": 0}


@pytest.fixture
def fresh_registration(monkeypatch):
    monkeypatch.setattr(trt_plugin, "_registered", False)


@pytest.fixture
def triton_compile(monkeypatch):
    """Triton compiles for the build machine's GPU, which this machine lacks: the compile returns a fixed kernel
    and records what it was asked (the real compile to PTX: test_the_aot_ptx_gets_vector_loads_from_the_hints)."""
    asked = []

    def compile_kernel(dtype, k=27, dilation=3, tiles=trt_plugin.kernels.TileConfig(), target=None,
                       int_values=None):
        asked.append({"dtype": dtype, "k": k, "dilation": dilation, "int_values": dict(int_values or {})})
        return trt_plugin.CompiledKernel("graph_attention_kernel", "// ptx", tiles.num_warps, 4096)

    monkeypatch.setattr(trt_plugin, "compile_kernel", compile_kernel)
    return asked


@pytest.mark.parametrize("release", ["10.16", "11.1"])
def test_a_plugin_bundle_registers_the_plugin_before_parsing(tmp_path, fake_trt, fresh_registration,
                                                             triton_compile, release):
    fake = fake_trt(release, "cuda-python-13", gpu=FakeGpu(**RTX))
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=1, plugin=True)
    result = build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO()))
    registered = fake.trt._registry["slsg::GraphAttention"]
    assert registered.autotune is not None and registered.aot_impl is not None
    assert result.key.plugins == ("slsg::GraphAttention",)
    [plugin] = json.loads(result.engine_path.read_bytes())["aot_plugins"]
    assert plugin["id"] == "slsg::GraphAttention" and plugin["kernel"] == "graph_attention_kernel"


@pytest.mark.parametrize("batch", [1, "N"])
def test_a_fused_plugin_build_goes_through_tensorrts_format_selection_and_launch_parameters(
        tmp_path, fake_trt, fresh_registration, triton_compile, batch):
    """TensorRT calls register on dummy then real shapes, autotune from format selection (twice) and aot_impl
    from get_launch_params; autotune's positions must be iterables, launch parameters symbolic expressions."""
    fake = fake_trt("10.16", "cuda-python-13", gpu=FakeGpu(**RTX))
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=batch, plugin=True)
    result = build_engine(bundle, BuildSettings(precision="fp16", max_batch=None if batch == 1 else 2),
                          console=Console(file=io.StringIO()))
    calls = [c for c in fake.gpu.calls if c[0].startswith("plugin.")]
    assert calls == [("plugin.register", "dummy"), ("plugin.register", "real"), ("plugin.autotune",),
                     ("plugin.autotune",), ("plugin.aot_impl", ["FLOAT"] * 4 + ["FLOAT"] * 2 + ["INT32"])]
    [plugin] = json.loads(result.engine_path.read_bytes())["aot_plugins"]
    c, n = PLUGIN_CN
    batch_expr = "1" if batch == 1 else "B"                       # a dynamic batch is known only at run time
    assert plugin["launch"]["grid_x"] == "2" and plugin["launch"]["grid_y"] == "2"      # cdiv(48, 32), cdiv(8, 64)+1
    assert plugin["launch"]["grid_z"] == batch_expr and plugin["launch"]["block_x"] == "128"
    assert plugin["extra_args"] == [str(c), str(c), str(n)]         # C, CQ, N follow the inputs
    assert plugin["output_types"] == ["FLOAT", "FLOAT", "INT32"]
    assert triton_compile == [{"dtype": "fp32", "k": 27, "dilation": 3, "int_values": {"C": c, "CQ": c, "N": n}}]


def test_aot_impl_passes_tensorrt_plugin_validation_of_its_return_annotation(fake_trt, fresh_registration):
    """tensorrt/plugin/_validate.py (10.9–11.1) raises "No return annotation found for aot_impl function"."""
    fake = fake_trt("10.16", "cuda-python-13", gpu=FakeGpu(**RTX))
    trt_plugin.register_plugin()
    assert fake.trt._registry["slsg::GraphAttention"].aot_impl is not None


@pytest.mark.parametrize("release", ["8.5", "8.6", "10.3"])
def test_tensorrt_before_10_9_refuses_a_plugin_bundle_with_the_way_out(tmp_path, fake_trt, release):
    fake_trt(release)
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=1, plugin=True)
    with pytest.raises(PluginUnsupported, match="needs TensorRT ≥ 10.9.*standard-op graph runs on every TensorRT"):
        build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO()))


def test_an_aot_engine_loads_and_runs_without_triton_or_the_plugin_module(tmp_path, fake_trt, fresh_registration,
                                                                          triton_compile):
    fake_trt("10.16", "cuda-python-13", gpu=FakeGpu(**RTX))
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=1, plugin=True)
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO())).engine_path
    code = textwrap.dedent(f"""
        import sys
        sys.modules["triton"] = None                      # `import triton` now fails
        import numpy as np
        from edge_runtime.tests.fakes.gpu import FakeGpu
        from edge_runtime.tests.fakes.tensorrt import install

        class Patch:
            setitem = staticmethod(lambda d, k, v: d.__setitem__(k, v))
            delitem = staticmethod(lambda d, k: d.pop(k))

        install(Patch, "10.16", "cuda-python-13", gpu=FakeGpu(**{RTX!r}))
        from edge_runtime.tensorrt import TensorRTBackend
        with TensorRTBackend({str(path)!r}) as backend:
            out = backend.run(np.full((1, 16, 24, 3), 51, np.uint8))
        assert abs(float(out.score[0]) - 0.2) < 1e-6, out.score
        loaded = [m for m in ("triton", "edge_runtime.kernels.trt_plugin") if sys.modules.get(m) is not None]
        print("loaded:", loaded)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded: []" in proc.stdout


def test_the_backend_refuses_a_plugin_engine_on_tensorrt_without_aot_plugins(tmp_path, fake_trt, fresh_registration,
                                                                              triton_compile):
    fake_trt("10.16", "cuda-python-13", gpu=FakeGpu(**RTX))
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=1, plugin=True)
    path = build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO())).engine_path
    fake = fake_trt("10.3", "cuda-python-12", gpu=FakeGpu(**RTX))
    with pytest.raises(PluginUnsupported, match="needs TensorRT ≥ 10.9"):
        TensorRTBackend(path)
    assert fake.gpu.live() == [] and not fake.gpu.names("trt.")


def _triton_rule(kind: str, value) -> list:
    """What Triton's JIT derives for an argument (triton.backends.compiler.BaseBackend), aligned launch."""
    from triton.backends.compiler import BaseBackend

    class Aligned:  # a tensor whose data_ptr is 256-byte aligned, as TensorRT's device memory is
        def data_ptr(self):
            return 0x7F0000000100

    spec = (BaseBackend.get_tensor_specialization(Aligned(), align=True) if kind.startswith("*")
            else BaseBackend.get_int_specialization(value, align=True) if value is not None else "")
    return BaseBackend.parse_attr(spec)


@pytest.mark.parametrize("ints", [{"C": 512, "CQ": 64, "N": 256}, {"C": 24, "CQ": 40, "N": 100}, {}])
def test_aot_hints_are_the_jit_specialisation_of_aligned_tensors(ints):
    signature = trt_plugin.aot_signature("fp16")
    attrs = trt_plugin.alignment_attrs(signature, ints)
    for i, (name, kind) in enumerate(signature.items()):
        if kind == "constexpr":
            continue
        want = _triton_rule(kind, ints.get(name))
        assert attrs.get((i,), []) == want, name


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="Triton runs as its interpreter here")
def test_the_aot_ptx_gets_vector_loads_from_the_hints(monkeypatch):
    backends = pytest.importorskip("triton.backends.compiler")
    target = backends.GPUTarget("cuda", 87, 32)
    hinted = trt_plugin.compile_kernel("fp16", target=target, int_values={"C": 512, "CQ": 64, "N": 256})
    monkeypatch.setattr(trt_plugin, "alignment_attrs", lambda signature, ints: {})
    plain = trt_plugin.compile_kernel("fp16", target=target)
    assert "ld.global.v4" in hinted.ptx and "ld.global.v4" not in plain.ptx
