"""`slsg-edge build BUNDLE --fp16|--int8|--fp32 [--dla N [--gpu-fallback]]`: a TensorRT engine for this device,
cached in the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from edge_runtime.bundle import load_bundle
from edge_runtime.errors import SlsgError
from edge_runtime.tensorrt import BuildSettings, TensorRTMissing, build_engine, load_tensorrt


def _precision(fp16: bool, int8: bool, fp32: bool) -> str:
    chosen = [name for name, on in (("fp16", fp16), ("int8", int8), ("fp32", fp32)) if on]
    if len(chosen) > 1:
        raise typer.BadParameter(f"choose one precision, got {' and '.join('--' + c for c in chosen)}")
    return chosen[0] if chosen else "fp16"


def _fail(console, message: str, code: int) -> typer.Exit:
    """Print `error: message` (verbatim, no markup, no wrapping mid-word) and return the exit to raise."""

    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def command(
    bundle: Path = typer.Argument(..., help="Bundle folder (model.slsg/) written by `slsg export`."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 engine (the default)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 engine from the bundle's Q/DQ model."),
    fp32: bool = typer.Option(False, "--fp32", help="FP32 engine (reference accuracy, slowest)."),
    workspace_mb: Optional[int] = typer.Option(None, "--workspace-mb", min=16,
                                               help="Builder workspace limit in MiB (default: TensorRT's)."),
    max_batch: Optional[int] = typer.Option(
        None, "--max-batch", min=1,
        help="Largest batch the engine accepts (a dynamic-batch bundle; default: the bundle's batch, or 1)."),
    legacy_calibrator: bool = typer.Option(False, "--legacy-calibrator",
                                           help="INT8 via TensorRT's entropy calibrator (TensorRT ≤ 10)."),
    dla: Optional[int] = typer.Option(None, "--dla", min=0,
                                      help="Build for this DLA core (Jetson AGX Orin / Orin NX), FP16 or INT8."),
    gpu_fallback: bool = typer.Option(False, "--gpu-fallback",
                                      help="With --dla: layers the DLA cannot run go to the GPU."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when a trusted cached engine exists."),
    verbose: bool = typer.Option(False, "--verbose", help="Show TensorRT's warnings and info."),
) -> None:
    """Build (or reuse) the TensorRT engine for this GPU and TensorRT version."""


    console = Console(stderr=True)
    precision = _precision(fp16, int8, fp32)
    if not bundle.is_dir():
        raise _fail(console, f"{bundle} is not a bundle folder (expected model.slsg/ from slsg export)", 1)
    try:
        load_tensorrt()
    except TensorRTMissing as exc:
        raise _fail(console, str(exc), 2) from None


    settings = BuildSettings(precision=precision, workspace_mb=workspace_mb, max_batch=max_batch,
                             legacy_calibrator=legacy_calibrator, dla_core=dla, gpu_fallback=gpu_fallback,
                             force=force, verbose=verbose)
    try:
        loaded = load_bundle(bundle)
        result = build_engine(loaded, settings, console=console)
    except (SlsgError, OSError) as exc:
        raise _fail(console, str(exc), 1) from None
    if result.cached:
        console.print(f"{result.reason}: {result.engine_path}", highlight=False, markup=False)
    else:
        console.print(f"built {result.engine_path.name} in {result.seconds:.1f} s ({result.reason})",
                      highlight=False, markup=False)
    typer.echo(str(result.engine_path))
