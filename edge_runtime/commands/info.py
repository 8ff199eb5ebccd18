"""`slsg-edge info`: what a bundle holds, verified; refuses a damaged one."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _engines(root: Path) -> list[tuple[str, int, dict | None, str]]:
    """(engine file, bytes, sidecar JSON or None, a note) for every non-JSON file under engines/."""
    folder = root / "engines"
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(x for x in folder.rglob("*") if x.is_file() and x.suffix != ".json"):
        sidecar = p.with_name(p.name + ".json")
        if not sidecar.is_file():
            sidecar = p.with_suffix(".json")
        meta, note = None, "no sidecar JSON"
        if sidecar.is_file():
            try:
                meta, note = json.loads(sidecar.read_text(encoding="utf-8")), ""
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                note = f"unreadable sidecar: {e}"
        out.append((p.relative_to(root).as_posix(), p.stat().st_size, meta, note))
    return out


def command(bundle: Path = typer.Argument(..., help="The model.slsg/ folder.")) -> None:
    """Show the manifest, its files and the engines built here; exit 2 with the reason on a damaged bundle."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from edge_runtime.bundle import BundleError, load_bundle

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
        ("schema", f"{m['schema']} v{m['schema_version']}"),
        ("created", str(m.get("created", "–"))),
        ("input", f"{m.get('input', {}).get('name', 'image')} uint8 BGR NHWC {b.size[0]}×{b.size[1]}"),
        ("normalisation", f"mean {list(b.normalization.mean)} std {list(b.normalization.std)}"),
        ("score", json.dumps(m.get("score", {}))),
        ("threshold", f"{th.value:.6g} (false-reject rate {th.false_reject_rate:g} on {th.n_good} good)"),
        ("models", ", ".join(f"{k}: {v}" for k, v in m.get("models", {}).items()) or "–"),
        ("backbone", str(m.get("model", {}).get("backbone", "–"))),
        ("data fingerprint", str(m.get("data_fingerprint", "–"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) or "–"),
    ]
    for k, v in rows:
        head.add_row(k, Text(v))
    console.print(head)
    files = Table(title="files (sha256 verified)")
    for col, just in (("file", "left"), ("bytes", "right"), ("sha256", "left")):
        files.add_column(col, justify=just)
    for name, rec in m["files"].items():
        files.add_row(name, f"{rec['bytes']:,}", rec["sha256"][:16] + "…")
    console.print(files)
    engines = _engines(b.root)
    table = Table(title="engines (built on a device, not hashed)")
    for col in ("engine", "bytes", "built for"):
        table.add_column(col)
    for name, size, meta, note in engines:
        table.add_row(name, f"{size:,}", Text(note or json.dumps(meta, separators=(", ", ": "))))
    if not engines:
        table.add_row("none", "", "build one with `slsg-edge build BUNDLE --fp16|--int8`")
    console.print(table)
