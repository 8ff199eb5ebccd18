"""INT8 accuracy against calibration strategy and size: one export per (strategy, N), gate numbers tabulated.

    python benchmarks/int8_sweep.py RUN [--sizes 16,64] [--strategies random,stratified,diverse] [--out DIR]

Each cell is a real `slsg export --int8` of RUN (calibrated on its training images, gated on its held-out
validation images and test anomalies); the table reports the int8-cpu flavour against FP32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def sweep(run: Path, sizes: list[int], strategies: list[str], method: str) -> list[dict]:
    from export.bundle_writer import BundleOptions, write_bundle
    from export.onnx_export import ExportError

    rows = []
    with tempfile.TemporaryDirectory(prefix="slsg-int8-sweep-") as tmp:
        for strategy in strategies:
            for n in sizes:
                t0 = time.perf_counter()
                row = {"strategy": strategy, "n": n, "method": method}
                try:
                    result = write_bundle(run, Path(tmp) / f"{strategy}-{n}.slsg", BundleOptions(
                        int8=True, calib_size=n, calib_strategy=strategy, calib_method=method, auroc_budget=1.0))
                    if "int8" in result.left_out:
                        raise ExportError("; ".join(result.left_out["int8"].reasons))
                    report = result.precisions.int8
                    acc = report["flavours"]["int8-cpu"]["accuracy"]
                    row.update(auroc_fp32=acc["auroc_fp32"], auroc_int8=acc["auroc_int8"],
                               drop_points=100 * (acc["auroc_drop"] or 0.0), map_corr=acc["map_pearson"],
                               score_rho=acc["score_spearman"], fallback=len(report["fallback_nodes"]))
                except ExportError as exc:
                    row["error"] = str(exc)
                row["seconds"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| strategy | N | AUROC fp32 | AUROC int8-cpu | drop (points) | map corr. | score ρ | export s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['strategy']} | {r['n']} | {r['error']} | | | | | {r['seconds']} |")
            continue
        lines.append(f"| {r['strategy']} | {r['n']} | {r['auroc_fp32']:.3f} | {r['auroc_int8']:.3f} | "
                     f"{r['drop_points']:+.2f} | {r['map_corr']:.4f} | {r['score_rho']:.3f} | {r['seconds']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--sizes", default="16,64")
    ap.add_argument("--strategies", default="random,stratified,diverse")
    ap.add_argument("--method", default="minmax")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = sweep(args.run, [int(s) for s in args.sizes.split(",")], args.strategies.split(","), args.method)
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "int8_sweep.json").write_text(json.dumps(rows, indent=2))
        (args.out / "int8_sweep.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
