"""INT8 with and without the per-file refit of the global head: same calibration, fallback off, the export's gate.

    python -m benchmarks.int8_head_refit RUN BUNDLE [--calib-size 256]

RUN is a trained fused RUN whose dataset is reachable, BUNDLE its FP32 export (`slsg export RUN -o BUNDLE`); the
FP32 model is quantised twice into a temporary folder and both flavours gated on the RUN's validation goods and
test anomalies, as `slsg export --int8` does. Prints the fused and each head's AUROC and the map correlation.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def compare(run_dir: Path, bundle_dir: Path, calib_size: int) -> list[dict]:
    from calibration.bundle import quantize_bundle
    from calibration.int8 import Int8Config
    from calibration.selection import select_calibration_set
    from edge_runtime.bundle import load_bundle
    from export.precisions import GATE_IMAGES, HeadRefit, gate_set
    from export.run_data import open_run_data
    from slsg.checkpoint import load_run

    run, _ = load_run(run_dir)
    bundle = load_bundle(bundle_dir)
    data = open_run_data(run.config)
    if data is None:
        raise SystemExit(f"{run_dir}: its dataset is not reachable from here")
    gate = gate_set(data, bundle.size, bundle.threshold.value, GATE_IMAGES)
    calib = select_calibration_set(data.train, bundle.size, n=calib_size, strategy="random", seed=data.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="slsg-refit-ab-") as tmp:
        for refit in (False, True):
            out = Path(tmp) / ("refit" if refit else "plain")
            out.mkdir()
            shutil.copy(bundle.root / "model.onnx", out / "model.onnx")
            adjust = HeadRefit.for_run(run, data, gate, bundle.size, print) if refit else None
            report = quantize_bundle(out / "model.onnx", calib, out, Int8Config(auto_fallback=False, seed=data.seed),
                                     gate.eval, measure_latency=False, adjust=adjust)
            for flavour, summary in report.flavours.items():
                acc = summary.accuracy
                rows.append({"refit": refit, "flavour": flavour, "fp32": acc.auroc_fp32, "int8": acc.auroc_int8,
                             "global": acc.heads.get("score_global", {}).get("candidate"),
                             "slsg": acc.heads.get("score_slsg", {}).get("candidate"),
                             "map_r": acc.map_pearson, "passed": acc.passed})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--calib-size", type=int, default=256)
    args = ap.parse_args()
    rows = compare(args.run, args.bundle, args.calib_size)
    print("| refit | flavour | AUROC fp32 | AUROC int8 | global head | SLSG | map r | gate |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        cells = [r["fp32"], r["int8"], r["global"], r["slsg"], r["map_r"]]
        print(f"| {'yes' if r['refit'] else 'no'} | {r['flavour']} | "
              + " | ".join("–" if c is None else f"{c:.3f}" for c in cells)
              + f" | {'pass' if r['passed'] else 'refused'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
