"""`slsg bench RUN_OR_BUNDLE`: PyTorch eager vs ONNX Runtime and OpenVINO (FP32/bf16/INT8, TensorRT where built),
side by side in one alternating run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from benchmarks.bench import BenchConfig, run_bench
from benchmarks.report import latency_table, markdown, write_reports
from edge_runtime.bench import DEFAULT_BACKENDS, DEFAULTS
from slsg.commands._common import console, user_errors


def command(
    target: Path = typer.Argument(..., help="A RUN folder (exported to a temporary bundle) or a bundle folder."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report as JSON here."),
    out_dir: Path | None = typer.Option(None, "--out", help="Folder for bench.json, bench.md and the PNG plots."),
    run: Path | None = typer.Option(None, "--run", help="With a bundle target: its RUN, for the PyTorch side."),
    bundle: Path | None = typer.Option(None, "--bundle", help="With a RUN target: use this bundle, don't export."),
    threads: int = typer.Option(DEFAULTS.threads, "--threads", help="CPU threads for every backend and the GEMM peak."),
    warmup: int = typer.Option(DEFAULTS.warmup, "--warmup", help="Warm-up rounds (every case once per round)."),
    iterations: int = typer.Option(DEFAULTS.iterations, "--iterations",
                                   help="Timed rounds (every case once per round)."),
    backends: str = typer.Option(",".join(DEFAULT_BACKENDS), "--backends",
                                 help="Runtime backends to try; missing ones are skipped with the reason."),
    gemm_n: int = typer.Option(DEFAULTS.gemm_n, "--gemm-n",
                               help="Square GEMM size for the measured peaks (large: AMX and VNNI reach their peak "
                                    "only on large products)."),
    profile_runs: int = typer.Option(DEFAULTS.profile_runs, "--profile-runs",
                                     help="ONNX Runtime / OpenVINO profiler runs (0: none)."),
    parity: bool = typer.Option(True, "--parity/--no-parity", help="Evaluate every backend on a test set."),
    pixel: bool = typer.Option(False, "--pixel", help="Also pixel AUROC in the parity (slower)."),
    data: Path | None = typer.Option(None, "--data", help="Parity set (default: ../shared MVTec AD bottle, "
                                                          "else a small synthetic set)."),
    category: str | None = typer.Option(None, "--category", help="Category inside --data."),
    no_int8: bool = typer.Option(False, "--no-int8", help="When exporting a RUN: FP32 only."),
) -> None:
    """Latency p50/p90/p99, FPS, per stage; roofline vs measured GEMM peaks; op profile; accuracy parity."""
    with user_errors():
        # PyTorch's OpenMP workers spin after each eager forward and steal the cores of the case that follows in
        # the alternation; libgomp reads this once, when torch loads, so it is set before the first torch import.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

        if warmup < 0 or iterations < 1 or threads < 1:
            raise ValueError("--warmup must be ≥ 0, --iterations ≥ 1 and --threads ≥ 1")
        if not target.exists():
            raise FileNotFoundError(f"{target} does not exist: give a RUN folder or a bundle folder")
        cfg = BenchConfig(threads=threads, warmup=warmup, iterations=iterations,
                          backends=tuple(b.strip() for b in backends.split(",") if b.strip()), gemm_n=gemm_n,
                          profile_runs=profile_runs, parity=parity, pixel=pixel, data=data, category=category,
                          run=run, bundle=bundle, int8=not no_int8)
        report, raw = run_bench(target, cfg, say=lambda m: console.print(f"[dim]{m}[/]"))
        if not report["cases"]:
            raise ValueError("nothing could be timed: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items()))
        console.print(markdown(report) if out_dir is None else "\n".join(latency_table(report)), markup=False)
        if out_dir is not None:
            for kind, path in write_reports(report, raw, out_dir).items():
                console.print(f"[green]wrote[/] {kind}: {path}")
        if json_out is not None:
            json_out.write_text(json.dumps({**report, "raw_end_to_end_ms": raw}, indent=2))
