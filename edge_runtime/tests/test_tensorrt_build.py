"""Builds through the fakes: DLA, batch profiles, parser failures, strongly typed networks, the one-line
reason for a rebuild, the backend's checks, the backend selector and `slsg-edge build` / `info`."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edge_runtime.backends import select_backend
from edge_runtime.cli import app
from edge_runtime.tensorrt import (
    BuildFailure,
    BuildRequestError,
    BuildSettings,
    EngineMismatch,
    ParserFailure,
    TensorRTBackend,
    build_engine,
)
from edge_runtime.tests.fakes.gpu import FakeGpu
from edge_runtime.tests.trt_bundles import H, W, frames, heads_model, make_trt_bundle

RTX = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": (8, 9), "integrated": False, "sm_count": 128,
       "dla_cores": 0}


def _build(bundle, **settings):
    return build_engine(bundle, BuildSettings(**settings), console=Console(file=io.StringIO()))


# ---------------------------------------------------------------- DLA

def test_dla_without_gpu_fallback_fails_on_layers_dla_cannot_run(tmp_path, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    with pytest.raises(BuildFailure, match="layer cannot run on DLA and GPU fallback is not enabled"):
        _build(bundle, precision="fp16", dla_core=0)


@pytest.mark.parametrize("release", ["8.5", "10.3", "11.4"])
def test_dla_with_gpu_fallback_is_built_keyed_and_loaded_on_its_core(tmp_path, fake_trt, release):
    fake = fake_trt(release, "cuda-python-12")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    result = _build(bundle, precision="fp16", dla_core=1, gpu_fallback=True)
    assert result.key.dla_core == 1 and "GPU_FALLBACK" in result.key.builder_flags
    assert "-dla1-" in result.engine_path.name
    assert "GPU_FALLBACK" in [c[1] for c in fake.gpu.calls if c[0] == "trt.set_flag"]
    assert json.loads(result.engine_path.read_bytes())["dla_core"] == 1
    assert not _build(bundle, precision="fp16").cached          # the GPU engine is another key
    with TensorRTBackend(result.engine_path) as backend:
        backend.run(frames(1))
    assert [c[1] for c in fake.gpu.calls if c[0] == "trt.deserialize_cuda_engine"] == [1]


@pytest.mark.parametrize("max_batch, shapes", [(None, 1), (2, 2)])
def test_a_dla_build_uses_a_static_profile_at_one_batch(tmp_path, fake_trt, max_batch, shapes):
    """DLA has no dynamic dimensions: min = opt = max, or every layer silently falls back to the GPU."""
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    result = _build(bundle, precision="fp16", dla_core=0, gpu_fallback=True, max_batch=max_batch)
    [(_, profile)] = [c for c in fake.gpu.calls if c[0] == "trt.add_optimization_profile"]
    assert profile == {"image": ((shapes, H, W, 3),) * 3}
    assert result.record["batch_profile"] == [shapes] * 3 and result.key.max_batch == shapes


def test_a_dla_engine_refuses_another_batch_with_a_clear_message(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = _build(bundle, precision="fp16", dla_core=1, gpu_fallback=True, max_batch=2).engine_path
    with TensorRTBackend(path) as backend:
        mark = len(fake.gpu.calls)
        with pytest.raises(EngineMismatch, match="runs batches of exactly 2 frames \\(DLA core 1 runs only the batch "
                                                 "it was built for\\); got 3.*--max-batch 3"):
            backend.run(frames(3))
        assert not [c for c in fake.gpu.calls[mark:] if c[0] == "trt.enqueue"], "a chunk ran before the refusal"
        backend.run(frames(4))
    assert [c[1] for c in fake.gpu.calls if c[0] == "trt.enqueue"] == [2, 2]


def test_the_sidecar_records_where_a_dla_engines_layers_ran_from_the_builders_report(tmp_path, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    result = _build(bundle, precision="fp16", dla_core=0, gpu_fallback=True)
    side = json.loads(result.engine_path.with_suffix(".json").read_text())
    placement = side["build"]["layer_placement"]
    assert placement["source"] == "builder report"
    assert any(name.startswith("{ForeignNode[") for name in placement["dla"])
    assert {g.split(":")[0] for g in placement["gpu"]} == {"CAST", "TOPK"}   # what DLA cannot run
    assert _build(bundle, precision="fp16", force=True).record["layer_placement"] is None   # a GPU engine


def test_without_a_builder_report_the_placement_comes_from_can_run_on_dla(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    fake.trt._log_dla_report = False
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    placement = _build(bundle, precision="fp16", dla_core=0, gpu_fallback=True).record["layer_placement"]
    assert placement["source"] == "can_run_on_DLA"
    assert "TOPK" in {g.split(":")[0] for g in placement["gpu"]} and placement["dla"]


@pytest.mark.parametrize("release, device, settings, message", [
    ("10.3", None, {"precision": "fp16", "dla_core": 2}, "DLA cores 0–1"),
    ("10.3", RTX, {"precision": "fp16", "dla_core": 0}, "discrete GPU: DLA cores exist only on Jetson"),
    ("10.16", None, {"precision": "fp16", "dla_core": 0}, "10.7 was the last 10.x with DLA"),
    ("11.1", None, {"precision": "fp16", "dla_core": 0}, "from 11.4.1 on Jetson AGX Orin"),
    ("10.3", None, {"precision": "fp32", "dla_core": 0}, "DLA runs FP16 and INT8 only"),
    ("10.3", None, {"precision": "fp16", "gpu_fallback": True}, "--gpu-fallback only applies with --dla"),
])
def test_dla_requests_that_cannot_be_built_say_why(tmp_path, fake_trt, release, device, settings, message):
    fake = fake_trt(release, gpu=FakeGpu(**device) if device else None)
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    with pytest.raises(BuildRequestError, match=message):
        _build(bundle, **settings)
    assert fake.gpu.live() == []


# ---------------------------------------------------------------- batch, parser, typing

def test_max_batch_on_a_fixed_batch_bundle_is_refused_before_building(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=1)
    with pytest.raises(BuildRequestError, match="fixed batch of 1, so --max-batch 8 cannot apply"):
        _build(bundle, precision="fp16", max_batch=8)
    assert not fake.gpu.names("trt.Builder")
    result = _build(bundle, precision="fp16")
    assert (result.key.max_batch, result.key.dynamic_batch) == (1, False)
    assert not fake.gpu.names("trt.add_optimization_profile")        # a fixed batch needs no profile


def test_a_manifest_that_lies_about_the_batch_is_caught_after_parsing(tmp_path, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=1)
    heads_model(bundle.root / "model.onnx", batch="N")                 # the file is dynamic, the manifest not
    bundle.manifest.files["model.onnx"].sha256 = "x" * 64
    with pytest.raises(BuildFailure, match="manifest says a fixed batch of 1.*re-export"):
        _build(bundle, precision="fp16")


def test_parser_failures_on_8_5_name_the_node_from_the_onnx_file(tmp_path, fake_trt):
    fake_trt("8.5", "cuda-python-11")
    bundle = make_trt_bundle(tmp_path / "model.slsg", batch=1, plugin=True)
    bundle.manifest.plugins = []                                     # a graph with an op 8.5 cannot parse
    with pytest.raises(ParserFailure) as info:
        _build(bundle, precision="fp16")
    text = str(info.value)
    assert "TensorRT 8.5.2 could not parse model.onnx" in text and "(op GraphAttention)" in text
    assert "[UNSUPPORTED_NODE]" in text and "Hint: the fused plugin op needs TensorRT ≥ 10.9" in text


def test_tensorrt_11_gets_no_precision_pins_in_its_strongly_typed_network(tmp_path, fake_trt):
    fake_trt("11.1", "cuda-python-13")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    for precision in ("fp16", "int8"):
        result = _build(bundle, precision=precision)      # the fake refuses layer precision when typed
        assert result.key.float_layers == () and result.key.builder_flags == ()


def test_int8_qdq_builds_without_a_calibrator_and_a_graph_without_qdq_does_not(tmp_path, fake_trt):
    fake_trt("10.3")
    assert _build(make_trt_bundle(tmp_path / "a.slsg"), precision="int8").key.variant == "qdq"
    with pytest.raises(BuildFailure, match="Calibrator is not being used"):
        _build(make_trt_bundle(tmp_path / "b.slsg", int8_qdq=False), precision="int8")


def test_a_rebuild_says_in_one_line_what_differs(tmp_path, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    first = _build(bundle, precision="fp16")
    second = _build(bundle, precision="fp16", max_batch=4)
    assert not second.cached and "\n" not in second.reason
    assert f"the cached {first.engine_path.name} was built for another target: max_batch 1 ≠ 4" in second.reason
    assert _build(bundle, precision="fp16", force=True).reason == "--force"


def test_another_workspace_is_a_rebuild_with_that_workspace(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    _build(bundle, precision="fp16", workspace_mb=64)
    again = _build(bundle, precision="fp16", workspace_mb=128)
    assert not again.cached and "workspace_mb 64 ≠ 128" in again.reason
    assert [c[2] for c in fake.gpu.calls if c[0] == "trt.set_memory_pool_limit"] == [64 << 20, 128 << 20]
    assert _build(bundle, precision="fp16", workspace_mb=128).cached


# ---------------------------------------------------------------- the backend's checks

def test_an_input_shape_the_engine_refuses_is_an_error_not_garbage(tmp_path, fake_trt):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    path = _build(bundle, precision="fp16", max_batch=4).engine_path
    plan = json.loads(path.read_bytes())
    plan["profile"][0][0] = 2                  # an engine whose profile starts at batch 2
    foreign = tmp_path / "foreign.engine"
    foreign.write_bytes(json.dumps(plan).encode())
    with TensorRTBackend(foreign) as backend, pytest.raises(EngineMismatch, match="refused input shape"):
        backend.run(frames(1))
    assert fake.gpu.live() == []


def test_an_engine_from_another_tensorrt_is_refused_with_the_rebuild_command(tmp_path, fake_trt):
    fake_trt("10.3")
    path = _build(make_trt_bundle(tmp_path / "model.slsg"), precision="fp16").engine_path
    fake = fake_trt("10.16")
    with pytest.raises(EngineMismatch, match="slsg-edge build BUNDLE --force"):
        TensorRTBackend(path)
    assert fake.gpu.live() == []


# ---------------------------------------------------------------- backend selection

def test_auto_falls_back_to_onnx_runtime_when_the_engine_cannot_be_opened(tmp_path, fake_trt, monkeypatch):
    fake = fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    _build(bundle, precision="fp16")
    trt_backend = select_backend(bundle, "trt-fp16")
    assert trt_backend.name == "tensorrt-fp16"
    trt_backend.close()
    monkeypatch.setattr(TensorRTBackend, "_bind_addresses", lambda self: (_ for _ in ()).throw(
        EngineMismatch("refused")))
    chosen = select_backend(bundle, "auto", threads=1)
    assert chosen.name.startswith("onnx")
    assert fake.gpu.live() == [], "the backend that failed to open left CUDA resources"
    with pytest.raises(Exception, match="could not open"):
        select_backend(bundle, "trt-fp16")


# ---------------------------------------------------------------- CLI

def test_build_cli_takes_dla_and_gpu_fallback(tmp_path, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    res = CliRunner().invoke(app, ["build", str(bundle.root), "--fp16", "--dla", "0", "--gpu-fallback"])
    assert res.exit_code == 0, res.output
    assert "-dla0-" in res.output.strip().splitlines()[-1]
    res = CliRunner().invoke(app, ["build", str(bundle.root), "--fp16", "--max-batch", "8"])
    assert res.exit_code == 0, res.output
    fixed = make_trt_bundle(tmp_path / "fixed.slsg", batch=1)
    res = CliRunner().invoke(app, ["build", str(fixed.root), "--fp16", "--max-batch", "8"])
    assert res.exit_code == 1 and "fixed batch of 1" in res.output and "Traceback" not in res.output


def test_info_shows_where_the_layers_of_a_dla_engine_ran(tmp_path, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    _build(bundle, precision="fp16", dla_core=0, gpu_fallback=True, max_batch=2)
    res = CliRunner().invoke(app, ["info", str(bundle.root)], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "on DLA, 2 on GPU (builder report); GPU: CAST:" in res.output and "batch 2 dla0" in res.output


def test_info_lists_engines_with_their_keys_and_whether_they_fit_here(tmp_path, fake_trt):
    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    _build(bundle, precision="fp16", max_batch=4)
    fake_trt("10.3", gpu=FakeGpu(sm_count=8, total_memory=7 << 30))       # the same card on an Orin Nano
    _build(bundle, precision="fp16")
    res = CliRunner().invoke(app, ["info", str(bundle.root)], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "16 SMs" in res.output and "8 SMs" in res.output and "batch 1–4" in res.output
    assert "TensorRT 10.3.0.30" in res.output and "yes" in res.output and "sm_count 16 ≠ 8" in res.output
