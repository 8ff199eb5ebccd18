"""What parity looks like on trained models: correct exports (exported and simplified graph) against the three
injected export bugs, on the frames `slsg export` uses. The numbers behind `export.parity.ParityLimits`.

    python benchmarks/parity_study.py RUN [RUN ...] [--images 16] [--json FILE]

Per RUN and graph: |Δ map| p50/p99/p99.9/max, the share of pixels over 1e-4, map correlation, max |Δ score| over
the score range, Spearman of the scores and the verdict of the default limits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

TOLERANCES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def _profile(deploy, path: Path, frames, reference) -> dict[str, float]:
    """Share of pixels whose |Δ map| exceeds each of TOLERANCES."""
    import numpy as np

    from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    diff = np.abs(OnnxRuntimeBackend(path, threads=None, providers=["CPUExecutionProvider"]).run(frames).maps
                  - reference.maps)
    return {f"over_{t:g}": float(np.mean(diff > t)) for t in TOLERANCES}


def study(run: Path, images: int) -> list[dict]:
    from benchmarks import export_bugs as bugs
    from export.onnx_export import ExportConfig, deploy_for_run, export_onnx, simplify
    from export.parity import check_parity, parity_frames, torch_outputs
    from slsg.checkpoint import open_run

    r = open_run(run)
    deploy = deploy_for_run(run)
    frames, source = parity_frames(r.model_config.size, images, run_config=r.config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="slsg-parity-study-") as tmp:
        t = Path(tmp)
        raw = t / "exported.onnx"
        export_onnx(deploy, raw, ExportConfig(simplify=False))
        graphs = {"exported": raw}
        if simplify(raw, t / "simplified.onnx") is None:
            graphs["simplified"] = t / "simplified.onnx"
        graphs["bug: wrong normalisation"] = bugs.wrong_normalisation(deploy, t / "norm.onnx")
        graphs["bug: wrong colour order"] = bugs.wrong_colour_order(deploy, t / "colour.onnx")
        graphs["bug: missing layer"] = bugs.missing_layer(raw, t / "missing.onnx")
        reference = torch_outputs(deploy, frames)
        for name, path in graphs.items():
            rep = check_parity(deploy, path, frames, source)
            profile = _profile(deploy, path, frames, reference)
            m, s = rep.map, rep.scores["score"]
            rows.append({"run": str(run), "backbone": r.model_config.backbone, "graph": name, "frames": len(frames),
                         "p50": m.p50, "p99": m.p99, "p999": m.p999, "max": m.max, "over": m.fraction_over,
                         "corr": m.correlation, "dscore": s.max_abs, "range": s.range, "spearman": s.spearman,
                         "ok": rep.ok, "problems": rep.problems(), **profile})
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| RUN | graph | \\|Δmap\\| p50 / p99 / p99.9 / max | px > 1e-4 / 1e-3 / 1e-2 | map r | "
            "max \\|Δscore\\| / range | ρ | default |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {Path(r['run']).name} ({r['backbone']}) | {r['graph']} | {r['p50']:.1e} / {r['p99']:.1e} / "
                     f"{r['p999']:.1e} / {r['max']:.1e} | {r['over']:.3%} / {r.get('over_0.001', 0):.3%} / "
                     f"{r.get('over_0.01', 0):.3%} | {r['corr']:.6f} | "
                     f"{r['dscore']:.1e} / {r['range']:.1e} | {r['spearman']:.3f} | "
                     f"{'pass' if r['ok'] else 'FAIL'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--images", type=int, default=16, help="good images (plus half as many anomalies)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [row for run in args.runs for row in study(run, args.images)]
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
