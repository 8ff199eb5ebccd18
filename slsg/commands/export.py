"""`slsg export RUN -o model.slsg`: a verified deployable bundle (ONNX + manifest), parity printed."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run: Path = typer.Argument(..., help="RUN folder made by `slsg train`."),
    out: Path = typer.Option(..., "-o", "--out", help="Bundle folder to write, e.g. model.slsg"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17: TensorRT 8.5/8.6 read ≤ 17)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Symbolic batch size (default 1)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write model.fp16.onnx."),
    int8: bool = typer.Option(False, "--int8", help="Also write INT8 Q/DQ models calibrated on good images."),
    calib_size: int | None = typer.Option(None, "--calib-size", help="Calibration images (--int8)."),
    calib_strategy: str | None = typer.Option(None, "--calib-strategy", help="random|stratified|diverse."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax|entropy|percentile (--int8)."),
    auroc_budget: float = typer.Option(0.01, "--auroc-budget", help="Largest INT8 AUROC drop accepted (--int8)."),
    int8_backend: str = typer.Option("ort", "--int8-backend",
                                     help="Who makes model.int8.onnx: ort|modelopt (int8-cpu stays ORT's)."),
    modelopt_python: str | None = typer.Option(None, "--modelopt-python", envvar="SLSG_MODELOPT_PYTHON",
                                               help="Python of the separate nvidia-modelopt venv."),
    parity_atol: float = typer.Option(1e-4, "--parity-atol", help="Largest |Δ map| ONNX Runtime vs PyTorch."),
    fused_graph_attention: bool = typer.Option(False, "--fused-graph-attention",
                                               help="Export the graph layer as one TensorRT plugin node "
                                                    "(TensorRT ≥ 10.9 only)."),
    parity_images: Path | None = typer.Option(None, "--parity-images",
                                       help="Images for the parity check (default: the RUN's data)."),
    no_simplify: bool = typer.Option(False, "--no-simplify", help="Keep the graph as torch exported it."),
    no_threshold: bool = typer.Option(False, "--no-threshold", help="Export a RUN that has no threshold."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle at -o."),
) -> None:
    """RUN → bundle: ONNX (uint8 BGR in; map and score out), parity vs PyTorch, TensorRT op check."""
    from rich.console import Console
    from rich.markup import escape

    from edge_runtime.bundle import BundleError
    from export.bundle_writer import BundleOptions, write_bundle
    from export.onnx_export import ExportConfig, ExportError
    from export.parity import parity_table
    from slsg.checkpoint import CheckpointError

    console = Console()
    try:
        options = BundleOptions(
            export=ExportConfig(opset=opset, dynamic_batch=dynamic_batch, simplify=not no_simplify,
                                fused_graph_attention=fused_graph_attention),
            parity_images=parity_images, no_threshold=no_threshold, force=force, fp16=fp16, int8=int8,
            calib_size=calib_size, calib_strategy=calib_strategy,
            calib_method=calib_method, auroc_budget=auroc_budget, parity_atol=parity_atol,
            int8_backend=int8_backend, modelopt_python=modelopt_python)
        result = write_bundle(run, out, options, say=lambda msg: console.print(f"[dim]{msg}[/]"))
    except (ExportError, CheckpointError, BundleError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]slsg export:[/] {escape(str(e))}")  # escaped: "[onnx]" is not markup
        raise typer.Exit(2) from None
    console.print(parity_table(result.parity))
    ok = [v for v, s in result.trt.summary()["versions"].items() if s["ok"]]
    console.print(f"TensorRT ONNX parser op check: [green]ok[/] for {', '.join(ok)} "
                  f"({len(result.trt.op_types)} op types, opset {result.trt.opset})")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if result.precisions is not None:
        from export.precisions import precision_table

        console.print(precision_table(result.precisions))
    models = ", ".join(f"{k}={v}" for k, v in result.manifest.get("models", {}).items())
    console.print(f"[green]wrote[/] {result.root} ({models}) in {result.seconds:.1f} s")
