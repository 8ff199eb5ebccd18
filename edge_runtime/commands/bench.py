"""`slsg-edge bench BUNDLE`: the command and its table over `edge_runtime.bench` (which does the timing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_runtime.bench import DEFAULT_BACKENDS, DEFAULTS, bench_bundle


def print_report(report: dict) -> None:
    console = Console()
    m = report["machine"]
    table = Table(title=f"{report['bundle']} · {report['size'][0]}×{report['size'][1]} · "
                        f"{m['cpu']} · threads {m['threads']} · {report['iterations']} iterations "
                        f"(+{report['warmup']} warm-up), alternating")
    for col in ("case", "p50 ms", "p90 ms", "p99 ms", "mean ms", "FPS", "pre", "infer", "post"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for name, c in report["cases"].items():
        e, st = c["end_to_end"], c["stages"]
        stage = [f"{st[s]['p50_ms']:.2f}" if s in st else "" for s in ("pre", "infer", "post")]
        table.add_row(name, f"{e['p50_ms']:.2f}", f"{e['p90_ms']:.2f}", f"{e['p99_ms']:.2f}",
                      f"{e['mean_ms']:.2f}", f"{e['fps']:.1f}", *stage)
    console.print(table)
    for name, why in report["skipped"].items():
        console.print(f"[yellow]skipped {name}:[/] {why}")
    for name, prof in report["profiles"].items():
        ops = ", ".join(f"{o['op']} {o['ms']:.1f} ms ({100 * o['share']:.0f} %)" for o in prof["top_ops"][:5])
        console.print(f"[dim]{name} top ops:[/] {ops}")
    console.print(f"peak RSS {report['peak_rss_mb']:.0f} MB; load average {m['load_average_1_5_15']}")


def command(
    bundle: Path = typer.Argument(..., help="The model.slsg/ folder."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    backends: str = typer.Option(",".join(DEFAULT_BACKENDS), "--backends",
                                 help="Comma-separated: onnx, onnx-int8, onnx-fp16, openvino, openvino-bf16, "
                                      "openvino-int8, trt-fp16, trt-int8."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="CPU threads for ONNX Runtime / OpenVINO (default: their own)."),
    warmup: int = typer.Option(DEFAULTS.warmup, "--warmup", help="Warm-up rounds (every backend once per round)."),
    iterations: int = typer.Option(DEFAULTS.iterations, "--iterations",
                                   help="Timed rounds (every backend once per round)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Time on this image instead of a synthetic frame."),
    profile_runs: int = typer.Option(DEFAULTS.profile_runs, "--profile-runs",
                                     help="ONNX Runtime / OpenVINO profiler runs (0: no profile)."),
) -> None:
    """Latency p50/p90/p99 and FPS per backend, per stage, end-to-end and engine-only; per-op profiles."""

    names = [b.strip() for b in backends.split(",") if b.strip()]
    try:
        if warmup < 0 or iterations < 1:
            raise ValueError("--warmup must be ≥ 0 and --iterations ≥ 1")
        report = bench_bundle(bundle, names, threads, warmup, iterations, image, profile_runs)
    except (FileNotFoundError, ValueError) as e:  # a SlsgError (a bad bundle) is reported by the CLI
        Console(stderr=True, soft_wrap=True).print(Text("error: ", style="red") + Text(str(e)))
        raise typer.Exit(2) from None
    if not report["cases"]:
        Console(stderr=True, soft_wrap=True).print(
            Text("error: ", style="red") + Text("no backend could be opened: " + "; ".join(
                f"{k}: {v}" for k, v in report["skipped"].items())))
        raise typer.Exit(2)
    print_report(report)
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2))
