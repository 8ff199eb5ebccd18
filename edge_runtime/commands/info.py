"""`slsg-edge info`: what a bundle holds, verified; refuses a damaged one."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import SCHEMA, BundleError
from edge_runtime.tensorrt import TensorRTError, current_target, list_engines, tensorrt_available


def _target():
    """This machine's TensorRT target, or None and why not (info must work without TensorRT or a GPU)."""

    if not tensorrt_available():
        return None, "no TensorRT here"
    try:
        return current_target(), ""
    except TensorRTError as e:
        return None, str(e).splitlines()[0]


def _key_text(key: dict | None) -> str:
    """The engine key in one readable line (every field that makes it valid)."""
    if not key:
        return "–"
    dla = f" dla{key.get('dla_core')}" if key.get("dla_core", -1) not in (-1, None) else ""
    ranged = key.get("dynamic_batch") and not dla          # a DLA profile holds one batch
    batch = f"batch 1–{key.get('max_batch')}" if ranged else f"batch {key.get('max_batch')}"
    workspace = f"workspace {key['workspace_mb']} MiB" if key.get("workspace_mb") else "workspace default"
    kernel = (f" (kernel {str(key.get('plugin_kernel_sha256'))[:12]}, Triton {key.get('triton_version')}, "
              f"tiles {key.get('plugin_tiles')})") if key.get("plugin_kernel_sha256") else ""
    return (f"{key.get('precision')}/{key.get('variant')} · {key.get('gpu_name')} sm{key.get('compute_capability')} "
            f"{key.get('sm_count')} SMs {key.get('memory_mib')} MiB · TensorRT {key.get('tensorrt_version')} · "
            f"{batch}{dla} · {workspace} · flags {','.join(key.get('builder_flags', [])) or '–'} · float "
            f"{','.join(key.get('float_layers', [])) or '–'} · plugins {','.join(key.get('plugins', [])) or '–'}"
            f"{kernel} · {key.get('onnx_name')} {str(key.get('onnx_sha256', ''))[:12]}")


def _placement_text(placement: dict | None) -> str:
    """A DLA engine's layers: how many ran on DLA and which fell back to the GPU (from its sidecar)."""
    if not placement:
        return "–"
    dla, gpu = placement.get("dla", []), placement.get("gpu", [])
    head = f"{len(dla)} on DLA, {len(gpu)} on GPU" if dla else f"none on DLA: all {len(gpu)} on GPU"
    shown = ", ".join(gpu[:4]) + (", …" if len(gpu) > 4 else "")
    return f"{head} ({placement.get('source', '?')})" + (f"; GPU: {shown}" if gpu else "")


def _engine_table(b):


    target, why_not = _target()
    entries = list_engines(b, target)
    title = "engines (built on a device, not hashed in the manifest)"
    if target is None:
        title += f" — fit not checked: {why_not}"
    table = Table(title=title)
    for col in ("engine", "bytes", "key", "DLA layers", "fits this device"):
        table.add_column(col)
    for e in entries:
        fits = "not checked" if e.fits is None else ("yes" if e.fits else f"no: {e.reason}")
        table.add_row(e.file, f"{e.bytes:,}", Text(_key_text(e.key) if e.key else e.reason),
                      Text(_placement_text(e.placement)), Text(fits))
    if not entries:
        table.add_row("none", "", "build one with `slsg-edge build BUNDLE --fp16|--int8`", "", "")
    return table


def command(bundle: Path = typer.Argument(..., help="The model.slsg/ folder.")) -> None:
    """Show the manifest, its files and the engines built here; exit 2 with the reason on a damaged bundle."""


    console = Console()
    try:
        b = load_bundle(bundle)
    except BundleError as e:
        Console(stderr=True, soft_wrap=True).print(Text("error: ", style="red") + Text(str(e)))
        raise typer.Exit(2) from None
    m = b.manifest
    head = Table(title=f"bundle {b.root}", show_header=False)
    head.add_column("key", style="bold")
    head.add_column("value")
    th = b.threshold
    rows = [
        ("schema", f"{SCHEMA} v{m.schema_version}"),
        ("created", m.created or "–"),
        ("input", f"{m.input.name if m.input else 'image'} uint8 BGR NHWC {b.size[0]}×{b.size[1]}"),
        ("normalisation", f"mean {list(b.normalization.mean)} std {list(b.normalization.std)}"),
        ("score", json.dumps(m.scores.get("score", {}).get("definition", "–"))),
        ("threshold", f"{th.value:.6g} (false-reject rate {th.false_reject_rate:g} on {th.n_good} good)"),
        ("models", ", ".join(f"{k}: {v}" for k, v in m.models.items()) or "–"),
        ("backbone", str(m.model.get("backbone", "–"))),
        ("data fingerprint", str(m.data_fingerprint or "–")),
        ("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items()) or "–"),
    ]
    for k, v in rows:
        head.add_row(k, Text(v))
    console.print(head)
    files = Table(title="files (sha256 verified)")
    for col, just in (("file", "left"), ("bytes", "right"), ("sha256", "left")):
        files.add_column(col, justify=just)
    for name, rec in m.files.items():
        files.add_row(name, f"{rec.bytes:,}", rec.sha256[:16] + "…")
    console.print(files)
    console.print(_engine_table(b))
