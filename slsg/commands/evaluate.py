"""`slsg evaluate`: the SLSG authors' table (Structural / Logical / Mean), pixel AUROC and AU-sPRO."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from slsg.commands._common import console, err_console, user_errors
from slsg.data import open_dataset
from slsg.evaluation import evaluate_category, has_anomalies, threshold_check
from slsg.predictors import load_predictor
from slsg.reports import caught_table, head_table, render_table, results_to_json, score_histogram_png, write_image_csv


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
        categories = open_dataset(data, category)
        runs = per_category_runs(run, [c.name for c in categories])
        results, thresholds, checks, names = [], {}, {}, set()
        for cat in categories:
            if not cat.test:
                raise ValueError(f"{cat.root} has no test/ images to evaluate on")
            loaded = load_predictor(runs[cat.name], backend, bundle, device)
            result = evaluate_category(loaded.predict, cat, loaded.size, progress=not quiet, pixel=pixel)
            results.append(result)
            thresholds[cat.name] = loaded.threshold.value if loaded.threshold else None
            if loaded.threshold is not None:
                checks[cat.name] = threshold_check(result, loaded.threshold.value,
                                                   loaded.threshold.false_reject_rate, loaded.good_reference)
            names.add(loaded.name)
        backend_name = "/".join(sorted(names))
        scored = [r for r in results if has_anomalies(r)]
        if scored:
            console.print(render_table(scored, title=f"SLSG · {run.name} · backend {backend_name}"))
            console.print("[dim]Mean (all test images) is the SLSG README's 'Mean'; ½(L+S) is the MVTec LOCO "
                          "convention.")
        out_dir = plots or (run / "eval" if run.is_dir() else Path("eval"))
        fix = f"`slsg threshold {run} DATA` or `slsg-edge threshold BUNDLE --good DIR`"
        for r in results:
            check = checks.get(r.category)
            if not has_anomalies(r):
                flagged = (f"; {check.false_rejects} of {check.n_good} flagged at the threshold ({check.rate:.1%}, "
                           f"95 % {check.interval[0]:.1%}…{check.interval[1]:.1%})" if check else "")
                console.print(f"{r.category}: no defect images under test/, so no AUROC — only the "
                              f"{sum(i.kind == 'good' for i in r.images)} good ones{flagged}")
            for path, why in r.skipped:
                err_console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)
            if r.skipped:
                err_console.print(f"[yellow]{r.category}: {len(r.skipped)} unreadable test image(s) left out of "
                                  "these numbers[/] (listed in the JSON under `skipped`)")
            if len(r.heads) > 1 and has_anomalies(r):
                console.print(head_table(r))
            if check is not None and has_anomalies(r):
                console.print(caught_table(r, check))
            for line in check.warnings(r.category, fix) if check else []:
                err_console.print(f"[yellow]warning:[/] {line}", highlight=False)
            png = score_histogram_png(r, thresholds[r.category], out_dir / f"scores_{r.category}_{backend_name}.png")
            console.print(f"score histogram → {png}")
            csv_path = (json_out.with_suffix(f".{r.category}.csv") if json_out and len(results) > 1
                        else json_out.with_suffix(".csv") if json_out
                        else out_dir / f"images_{r.category}_{backend_name}.csv")
            console.print(f"per-image scores → {write_image_csv(r, csv_path, thresholds[r.category])}")
        if json_out:
            report = {"run": str(run), "backend": backend_name, "thresholds": thresholds,
                      "at_threshold": {k: v.to_dict() for k, v in checks.items()}, **results_to_json(results)}
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report, indent=2))
            console.print(f"metrics → {json_out}")
