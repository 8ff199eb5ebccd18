"""One real bench on a tiny faithful model: eager vs ONNX Runtime, roofline, parity; reports that parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer.main
from PIL import Image

from benchmarks.bench import BenchConfig, goals, overheads, run_bench
from benchmarks.report import markdown, write_reports
from slsg.commands.bench import command
from slsg.data.synthetic_scene import SMALL, write_dataset
from slsg.model import ModelConfig, build_model
from slsg.model.macs import count_macs


@pytest.fixture(scope="module")
def bench(tiny_run: Path, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    data = write_dataset(tmp_path_factory.mktemp("data"), counts=SMALL, size=64)
    cfg = BenchConfig(threads=1, warmup=1, iterations=3, backends=("onnx", "trt-int8"), gemm_n=64,
                      gemm_repeats=2, profile_runs=2, data=data, bundle=tiny_bundle)
    return run_bench(tiny_run, cfg)


def test_eager_and_runtime_are_timed_side_by_side(bench: tuple[dict, dict]) -> None:
    report, raw = bench
    assert set(report["cases"]) == {"torch", "onnx", "onnx (engine)"}
    assert all(len(v) == 3 for v in raw.values())
    assert set(report["cases"]["torch"]["stages"]) == {"pre", "infer", "post"}
    assert "trt-int8" in report["skipped"]
    assert report["speedup_vs_torch"]["torch"] == pytest.approx(1.0)
    assert report["machine"]["versions"]["torch"] and report["machine"]["threads"] == 1


def test_roofline_uses_the_repo_mac_count(bench: tuple[dict, dict]) -> None:


    report, _ = bench
    macs = count_macs(build_model(ModelConfig(size=64)).eval(), torch.zeros(1, 3, 64, 64))["total"]
    r = report["roofline"]
    assert r["macs"] == macs
    onnx = r["backends"]["onnx"]
    assert onnx["floor_ms"] == pytest.approx(2 * macs / r["peaks"]["fp32"] * 1e3)
    assert onnx["e2e_multiple"] == pytest.approx(report["cases"]["onnx"]["end_to_end"]["p50_ms"] / onnx["floor_ms"])
    assert report["profiles"]["onnx"]["top_ops"][0]["op"] == "Conv"


def test_fp32_onnx_matches_pytorch_on_the_parity_set(bench: tuple[dict, dict]) -> None:
    par = bench[0]["parity"]
    assert par["reference"] == "torch" and par["category"] == "synthetic_box"
    assert par["backends"]["onnx"]["map_max_abs"] < 1e-3
    assert par["backends"]["onnx"]["map_correlation"] > 0.999


def test_reports_are_written_and_parse(bench: tuple[dict, dict], tmp_path: Path) -> None:
    report, raw = bench
    paths = write_reports(report, raw, tmp_path)
    assert json.loads(paths["json"].read_text())["cases"].keys() == report["cases"].keys()
    md = paths["markdown"].read_text()
    assert "| case | p50 ms" in md and "## Roofline" in md and "## Accuracy parity" in md
    assert md.count("\n| onnx |") == 3  # latency, roofline and parity rows
    for key in ("latency_png", "parity_png"):
        with Image.open(paths[key]) as im:
            assert im.format == "PNG" and im.size[0] > 100


def test_goals_are_judged_from_the_measurements() -> None:
    report = {"speedup_vs_torch": {"onnx": 1.6, "onnx-int8": 3.0},
              "roofline": {"backends": {"onnx": {"e2e_multiple": 1.2}}},
              "parity": {"reference": "torch", "backends": {"onnx-int8": {"map_correlation": 0.995,
                                                                          "auroc_drop_points": 1.5}}}}
    judged = goals(report)
    assert [g["met"] for g in judged] == [True, False, False, True, False, False, True]
    assert judged[5]["goal"].startswith("best CPU path (onnx-int8)") and judged[5]["value"] == 3.0
    machine = {"cpu": "x", "cpus_usable": 2, "threads": 2, "load_average_1_5_15": None, "versions": {}}
    md = markdown({**report, "roofline": {}, "parity": None, "goals": goals(report), "machine": machine,
                   "iterations": 1, "warmup": 0, "cases": {}})
    assert md.count("| no |") == 4 and md.count("| yes |") == 3


def test_overhead_is_what_the_runtime_adds_to_the_bare_engine_call() -> None:
    cases = {"openvino": {"end_to_end": {"p50_ms": 11.0}}, "openvino (engine)": {"end_to_end": {"p50_ms": 10.0}},
             "torch": {"end_to_end": {"p50_ms": 50.0}}}
    assert overheads(cases) == {"openvino": pytest.approx(0.1)}
    report = {"speedup_vs_torch": {}, "cases": {**cases, "openvino-int8": {"end_to_end": {"p50_ms": 5.0}}}}
    by_goal = {g["goal"]: g for g in goals(report)}
    assert by_goal["openvino-int8 end-to-end speed-up vs openvino ≥ 1.5 (Lite0 goal)"]["value"] == pytest.approx(2.2)
    assert by_goal["openvino runtime overhead (end-to-end − engine) / engine ≤ 10 %"]["met"]


def test_slsg_bench_without_options_runs_the_configs_defaults() -> None:
    """The CLI declares its options without importing torch, so it cannot read BenchConfig: both read one table."""


    app = typer.Typer()
    app.command()(command)
    params = {p.name: p.default for p in typer.main.get_command(app).params}
    cfg = BenchConfig()
    assert (params["threads"], params["warmup"], params["iterations"], params["gemm_n"], params["profile_runs"]) == (
        cfg.threads, cfg.warmup, cfg.iterations, cfg.gemm_n, cfg.profile_runs)
    assert tuple(params["backends"].split(",")) == cfg.backends
