"""`slsg predict`: score and verdict per image, heatmap overlays and a CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from rich.table import Table

from edge_runtime.overlay import display_map, heatmap_overlay
from edge_runtime.preprocess import prepare
from edge_runtime.scoring import is_anomalous
from slsg.commands._common import console, err_console, user_errors
from slsg.data.images import BadImageError, list_images, read_image, write_png
from slsg.predictors import load_predictor


def _images(inputs: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found.extend(list_images(p))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    if not found:
        raise ValueError(f"no images found in {', '.join(map(str, inputs))}")
    return found


def command(
    run: Path = typer.Argument(..., help="RUN folder (or a bundle with --backend onnx*)"),
    inputs: list[Path] = typer.Argument(..., help="images or folders of images"),
    out: Path = typer.Option(..., "-o", "--out", help="folder for overlays and predictions.csv"),
    backend: str = typer.Option("torch", help="torch | onnx | onnx-fp16 | onnx-int8 | trt-fp16 | trt-int8"),
    sensitivity: float = typer.Option(1.0, help=">1 flags more, <1 flags fewer"),
    device: str = typer.Option("cpu"),
) -> None:
    """Judge images: OK/NG against the RUN's threshold, with a heatmap overlay per image."""
    with user_errors():
        loaded = load_predictor(run, backend, device=device)
        if loaded.threshold is None:
            raise ValueError(f"{run} has no threshold: train with validation images or run `slsg train` again")
        out.mkdir(parents=True, exist_ok=True)
        table = Table(title=f"slsg predict · threshold {loaded.threshold.value:.4f} · sensitivity {sensitivity:g}")
        rows, skipped, head_names = [], [], None
        for path in _images(inputs):
            try:
                image = read_image(path)
            except BadImageError as exc:
                skipped.append((path, str(exc)))
                continue
            result = loaded.predict(prepare(image, loaded.size)[None])
            score, heads = float(result.score[0]), result.head_scores(0)
            norms = (loaded.scores or {}).get("norms") or (loaded.scores or {}).get("score", {}).get("norms", {})
            amap = display_map(result.maps[0], {k: v[0] for k, v in result.head_maps.items()}, norms)
            if head_names is None:
                head_names = sorted(heads)
                for col in ("image", "score", *(f"{h}" for h in head_names), "verdict", "overlay"):
                    table.add_column(col)
            ng = bool(is_anomalous(score, loaded.threshold.value, sensitivity))
            name = f"{path.parent.name}_{path.stem}"  # test/<label>/000.png: the label keeps names unique
            overlay = out / f"{name}_overlay.png"
            write_png(overlay, heatmap_overlay(image, amap))
            rows.append({"image": str(path), "score": f"{score:.6f}",
                         **{f"score_{h}": f"{heads[h]:.6f}" for h in head_names},
                         "threshold": f"{loaded.threshold.value:.6f}", "verdict": "NG" if ng else "OK",
                         "overlay": str(overlay)})
            verdict = "[red]NG" if ng else "[green]OK"
            table.add_row(f"{path.parent.name}/{path.name}", f"{score:.4f}", *(f"{heads[h]:.4f}" for h in head_names),
                          verdict, overlay.name)
        with open(out / "predictions.csv", "w", newline="") as f:
            fields = ["image", "score", *(f"score_{h}" for h in head_names or []), "threshold", "verdict", "overlay"]
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        console.print(table)
        for path, why in skipped:
            err_console.print(f"[yellow]skipped[/] {path}: {why}")
        n_ng = sum(r["verdict"] == "NG" for r in rows)
        console.print(f"{len(rows)} judged ({n_ng} NG), {len(skipped)} skipped → {out / 'predictions.csv'}")
