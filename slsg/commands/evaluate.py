"""`slsg evaluate`: the SLSG authors' table (Structural / Logical / Mean), pixel AUROC and AU-sPRO."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slsg.commands._common import console, user_errors


def command(
    run: Path = typer.Argument(..., help="RUN folder (or a bundle with --backend onnx*)"),
    data: Path = typer.Argument(..., help="dataset root or category folder"),
    category: Optional[str] = typer.Option(None, help="category under DATA (default: all)"),
    backend: str = typer.Option("torch", help="torch | onnx | onnx-fp16 | onnx-int8 | trt-fp16 | trt-int8"),
    bundle: Optional[Path] = typer.Option(None, help="bundle for onnx/trt backends (default RUN/model.slsg)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write all metrics as JSON"),
    plots: Optional[Path] = typer.Option(None, help="folder for score histograms (default RUN/eval)"),
    pixel: bool = typer.Option(True, help="pixel AUROC and AU-sPRO (slower)"),
    device: str = typer.Option("cpu"),
    quiet: bool = typer.Option(False),
) -> None:
    """Evaluate a trained model on the test split: image AUROC (logical, structural, all), pixel AUROC, AU-sPRO."""
    with user_errors():
        import json

        from slsg.data import open_dataset
        from slsg.evaluation import evaluate_category, render_table, results_to_json, score_histogram_png
        from slsg.predictors import load_predictor

        loaded = load_predictor(run, backend, bundle, device)
        categories = open_dataset(data, category)
        results = []
        for cat in categories:
            if not cat.test:
                raise ValueError(f"{cat.root} has no test/ images to evaluate on")
            results.append(evaluate_category(loaded.predict, cat, (loaded.size, loaded.size), progress=not quiet,
                                             pixel=pixel))
        console.print(render_table(results, title=f"SLSG · {run.name} · backend {loaded.name}"))
        console.print("[dim]Mean (all test images) is the SLSG README's 'Mean'; ½(L+S) is the MVTec LOCO convention.")
        out_dir = plots or (run / "eval" if run.is_dir() else Path("eval"))
        threshold = loaded.threshold.value if loaded.threshold else None
        for r in results:
            png = score_histogram_png(r, threshold, out_dir / f"scores_{r.category}_{loaded.name}.png")
            console.print(f"score histogram → {png}")
        if json_out:
            report = {"run": str(run), "backend": loaded.name, **results_to_json(results)}
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report, indent=2))
            console.print(f"metrics → {json_out}")
