"""`slsg evaluate`: the SLSG authors' table (Structural / Logical / Mean), pixel AUROC and AU-sPRO."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slsg.commands._common import console, err_console, user_errors


def per_category_runs(run: Path, names: list[str]) -> dict[str, Path]:
    """One RUN for every category, or a folder of RUNs named by category (one model per category, as SLSG)."""
    if (run / "config.json").is_file() or (run / "manifest.json").is_file() or len(names) == 1:
        return dict.fromkeys(names, run)
    missing = [n for n in names if not (run / n / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{run} holds no RUN for {', '.join(missing)}: expected {run}/<category>/config.json "
                                "(train one per category with `slsg train DATA --category C -o RUN/C`)")
    return {n: run / n for n in names}


def command(
    run: Path = typer.Argument(..., help="RUN folder, a folder of RUNs named by category, or a bundle"),
    data: Path = typer.Argument(..., help="dataset root or category folder"),
    category: Optional[str] = typer.Option(None, help="category under DATA (default: all)"),
    backend: str = typer.Option("torch", help="torch | onnx | onnx-fp16 | onnx-int8 | openvino | openvino-bf16 | "
                                 "openvino-int8 | trt-fp16 | trt-int8 | auto"),
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
        from slsg.evaluation import evaluate_category
        from slsg.predictors import load_predictor
        from slsg.reports import (
            caught_table,
            head_table,
            render_table,
            results_to_json,
            score_histogram_png,
            write_image_csv,
        )

        categories = open_dataset(data, category)
        runs = per_category_runs(run, [c.name for c in categories])
        results, thresholds, names = [], {}, set()
        for cat in categories:
            if not cat.test:
                raise ValueError(f"{cat.root} has no test/ images to evaluate on")
            loaded = load_predictor(runs[cat.name], backend, bundle, device)
            results.append(evaluate_category(loaded.predict, cat, loaded.size, progress=not quiet, pixel=pixel))
            thresholds[cat.name] = loaded.threshold.value if loaded.threshold else None
            names.add(loaded.name)
        backend_name = "/".join(sorted(names))
        console.print(render_table(results, title=f"SLSG · {run.name} · backend {backend_name}"))
        console.print("[dim]Mean (all test images) is the SLSG README's 'Mean'; ½(L+S) is the MVTec LOCO convention.")
        out_dir = plots or (run / "eval" if run.is_dir() else Path("eval"))
        for r in results:
            for path, why in r.skipped:
                err_console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)
            if r.skipped:
                err_console.print(f"[yellow]{r.category}: {len(r.skipped)} unreadable test image(s) left out of "
                                  "these numbers[/] (listed in the JSON under `skipped`)")
            if len(r.heads) > 1:
                console.print(head_table(r))
            if thresholds[r.category] is not None:
                console.print(caught_table(r, thresholds[r.category]))
            png = score_histogram_png(r, thresholds[r.category], out_dir / f"scores_{r.category}_{backend_name}.png")
            console.print(f"score histogram → {png}")
            csv_path = (json_out.with_suffix(f".{r.category}.csv") if json_out and len(results) > 1
                        else json_out.with_suffix(".csv") if json_out
                        else out_dir / f"images_{r.category}_{backend_name}.csv")
            console.print(f"per-image scores → {write_image_csv(r, csv_path, thresholds[r.category])}")
        if json_out:
            report = {"run": str(run), "backend": backend_name, "thresholds": thresholds, **results_to_json(results)}
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report, indent=2))
            console.print(f"metrics → {json_out}")
