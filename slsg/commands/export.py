"""`slsg export RUN -o model.slsg`: a verified deployable bundle (ONNX + manifest), parity printed.

Exit status (docs/export.md): 0 — the bundle holds every precision asked for; 2 — no bundle (bad input, or the
FP32 export failed parity or the TensorRT check); 3 — the bundle was written with FP32 (and whatever passed),
but a precision asked for was left out (its accuracy gate or the TensorRT lint refused it): the reasons and
what to try next are printed and recorded in the manifest (`export.left_out`).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from edge_runtime.errors import SlsgError
from export.job import BundleOptions
from export.onnx_export import ExportConfig
from export.parity import ParityLimits, parity_table
from export.pipeline import write_bundle
from export.precisions import precision_table

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = 0, 2, 3


def command(
    run: Path = typer.Argument(..., help="RUN folder made by `slsg train`."),
    out: Path = typer.Option(..., "-o", "--out", help="Bundle folder to write, e.g. model.slsg"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17: TensorRT 8.5/8.6 read ≤ 17)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Symbolic batch size (default 1)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write model.fp16.onnx (gated like INT8)."),
    int8: bool = typer.Option(False, "--int8", help="Also write INT8 Q/DQ models calibrated on good images."),
    bf16: bool = typer.Option(False, "--bf16", help="Gate model.onnx in OpenVINO bf16 (needs a CPU with bf16); "
                                                     "only a passed gate lets the runtime use openvino-bf16."),
    calib_size: int | None = typer.Option(None, "--calib-size", help="Calibration images (--int8; default 256)."),
    calib_strategy: str | None = typer.Option(None, "--calib-strategy", help="random|stratified|diverse."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax|entropy|percentile (--int8)."),
    auroc_budget: float = typer.Option(0.01, "--auroc-budget",
                                       help="Largest AUROC drop accepted when it is significant "
                                            "(--int8/--fp16/--bf16)."),
    int8_fallback: int = typer.Option(16, "--int8-fallback", min=0,
                                      help="Most layers the INT8 gate may keep in float, most sensitive first "
                                           "(0: no fallback)."),
    int8_backend: str = typer.Option("ort", "--int8-backend",
                                     help="Who makes model.int8-s8.onnx: ort|modelopt (int8-u8 stays ORT's)."),
    modelopt_python: str | None = typer.Option(None, "--modelopt-python", envvar="SLSG_MODELOPT_PYTHON",
                                               help="Python of the separate nvidia-modelopt venv."),
    parity_atol: float = typer.Option(1e-4, "--parity-atol",
                                      help="|Δ map| above which a pixel counts as different (parity)."),
    fused_graph_attention: bool = typer.Option(False, "--fused-graph-attention",
                                               help="Export the graph layer as one TensorRT plugin node "
                                                    "(TensorRT ≥ 10.9 only)."),
    parity_images: Path | None = typer.Option(None, "--parity-images",
                                       help="Images for the parity check (default: the RUN's data)."),
    no_simplify: bool = typer.Option(False, "--no-simplify", help="Keep the graph as torch exported it."),
    no_threshold: bool = typer.Option(False, "--no-threshold", help="Export a RUN that has no threshold."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle at -o."),
) -> None:
    """RUN → bundle: ONNX (uint8 BGR in; map and scores out), parity vs PyTorch, TensorRT check, thresholds.

    Exit 0: complete; 2: no bundle; 3: bundle written, but a precision asked for was left out (see why)."""


    console = Console()
    try:
        options = BundleOptions(
            export=ExportConfig(opset=opset, dynamic_batch=dynamic_batch, simplify=not no_simplify,
                                fused_graph_attention=fused_graph_attention),
            parity_images=parity_images, no_threshold=no_threshold, force=force, fp16=fp16, int8=int8, bf16=bf16,
            calib_size=calib_size, calib_strategy=calib_strategy, calib_method=calib_method,
            auroc_budget=auroc_budget, int8_fallback=int8_fallback, parity=ParityLimits(pixel_atol=parity_atol),
            int8_backend=int8_backend, modelopt_python=modelopt_python)
        result = write_bundle(run, out, options, say=lambda msg: console.print(f"[dim]{escape(msg)}[/]"))
    except (SlsgError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]slsg export:[/] {escape(str(e))}")  # escaped: "[onnx]" is not markup
        raise typer.Exit(EXIT_FAILED) from None
    console.print(parity_table(result.parity))
    ok = [v for v, s in result.trt.summary()["versions"].items() if s["ok"]]
    console.print(f"TensorRT ONNX parser check: [green]ok[/] for {', '.join(ok)} "
                  f"({len(result.trt.op_types)} op types, opset {result.trt.opset})")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if result.precisions is not None:
        _print_precisions(console, result.precisions)
    models = ", ".join(f"{k}={v}" for k, v in result.manifest.models.items())
    console.print(f"[green]wrote[/] {result.root} ({models}) in {result.seconds:.1f} s")
    console.print("[dim]time per step: " + ", ".join(f"{name} {s:.1f} s" for name, s in result.steps.items()) + "[/]")
    if result.left_out:
        _print_left_out(console, result.left_out)
        raise typer.Exit(EXIT_PARTIAL)


def _print_precisions(console, report) -> None:


    if report.gate:
        console.print(f"[dim]accuracy gate: {report.gate['n_good']} validation good images, "
                      f"{report.gate['n_anomalous']} anomalies — {escape(report.gate['anomalies'])}[/]")
    if report.int8 or report.fp16 or report.bf16 or report.thresholds:
        console.print(precision_table(report))
    if report.held_out_shift and report.held_out_shift["shifted"]:
        console.print(f"[yellow]note:[/] {escape(report.held_out_shift['note'])}")
    for file, lint in report.lint.items():
        if not lint["ok"]:
            what = "not for TensorRT (ONNX Runtime's flavour)" if not lint["for_tensorrt"] else "[red]refused[/]"
            console.print(f"[dim]TensorRT lint of {file}: {what}[/]")


def _print_left_out(console, left_out: dict) -> None:
    for precision, lo in left_out.items():
        console.print(f"[yellow]left out {precision}:[/] " + escape("; ".join(lo.reasons)))
        for step in lo.next:
            console.print(f"  try: {escape(step)}")
    console.print("[yellow]the bundle is usable with the models above; exit status 3 (a precision asked for "
                  "is missing)[/]")
