"""Writing a bench report: JSON (everything), Markdown (the tables a reader wants), PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt


def _f(value, fmt: str = ".2f") -> str:
    return "—" if value is None else format(value, fmt)


def latency_table(report: dict) -> list[str]:
    floors = report.get("roofline", {}).get("backends", {})
    speedups = report.get("speedup_vs_torch", {})
    lines = ["| case | p50 ms | p90 ms | p99 ms | mean ms | FPS | pre | infer | post | × floor (p50) | "
             "speed-up vs torch (p50) |", "|---|" + "---:|" * 10]
    for name, c in report["cases"].items():
        e, st = c["end_to_end"], c["stages"]
        stage = [_f(st[s]["p50_ms"]) if s in st else "" for s in ("pre", "infer", "post")]
        base = name.removesuffix(" (engine)")
        floor = floors.get(base, {})
        multiple = e["p50_ms"] / floor["floor_ms"] if floor else None
        lines.append(f"| {name} | {_f(e['p50_ms'])} | {_f(e['p90_ms'])} | {_f(e['p99_ms'])} | "
                     f"{_f(e['mean_ms'])} | {_f(e['fps'], '.1f')} | {' | '.join(stage)} | "
                     f"{_f(multiple)} | {_f(speedups.get(name))} |")
    return lines


def roofline_lines(report: dict) -> list[str]:
    r = report.get("roofline")
    if not r:
        return []
    p = r["peaks"]
    ov = ", ".join(f"{k[len('openvino_'):]} {p[k] / 1e9:.0f}"
                   for k in ("openvino_fp32", "openvino_bf16", "openvino_int8") if p.get(k))
    lines = [f"Model: {r['gmacs']:.2f} GMAC. Measured peaks at {p['threads']} threads ({p['n']}² GEMM, "
             f"{p.get('how', 'best of repeats')}): ONNX Runtime fp32 {p['fp32'] / 1e9:.0f} GFLOP/s, int8 "
             f"{p['int8'] / 1e9:.0f} GOP/s (MatMulInteger {p['int8_matmulinteger'] / 1e9:.0f}, QLinearMatMul "
             f"{p['int8_qlinearmatmul'] / 1e9:.0f})" + (f"; OpenVINO {ov} GOP/s." if ov else "."), "",
             "| backend | arithmetic | peak | floor ms | end-to-end p50 / floor | engine p50 / floor |",
             "|---|---|---|---:|---:|---:|"]
    for name, b in r["backends"].items():
        lines.append(f"| {name} | {b['arith']} | {b.get('peak', b['arith'])} | {_f(b['floor_ms'])} | "
                     f"{_f(b.get('e2e_multiple'))} | {_f(b.get('engine_multiple'))} |")
    return lines


def profile_lines(report: dict) -> list[str]:
    lines = []
    for name, prof in report.get("profiles", {}).items():
        library = "OpenVINO" if prof.get("library") == "openvino" else "ONNX Runtime"
        lines += ["", f"**{name}** — {library} profile, {prof['run_ms']:.1f} ms per run, kernels "
                      f"{prof['kernel_ms']:.1f} ms:", "", "| op type | nodes | ms per run | share |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {o['op']} | {o['nodes']} | {o['ms']:.2f} | {100 * o['share']:.1f} % |" for o in prof["top_ops"]]
    return lines


def parity_lines(report: dict) -> list[str]:
    par = report.get("parity")
    if not par:
        return []
    lines = [f"Category `{par['category']}` ({par['layout']}), reference `{par['reference']}`.", "",
             "| backend | image AUROC | AUROC drop (points) | map max abs err | map mean abs err | "
             "map correlation | score max abs err |", "|---|" + "---:|" * 6]
    for name, b in par["backends"].items():
        lines.append(f"| {name} | {_f(b['auroc'], '.4f')} | {_f(b['auroc_drop_points'])} | "
                     f"{_f(b['map_max_abs'], '.4f')} | {_f(b['map_mean_abs'], '.5f')} | "
                     f"{_f(b['map_correlation'], '.5f')} | {_f(b['score_max_abs'], '.4f')} |")
    return lines


def goal_lines(report: dict) -> list[str]:
    goals = report.get("goals", [])
    if not goals:
        return []
    lines = ["| goal | measured | met |", "|---|---:|:---:|"]
    lines += [f"| {g['goal']} | {_f(g['value'], '.3f')} | {'yes' if g['met'] else 'no'} |" for g in goals]
    return lines


def markdown(report: dict) -> str:
    m = report["machine"]
    head = [f"# slsg bench — {report.get('title', report.get('bundle', ''))}", "",
            f"{m['cpu']}, {m['cpus_usable']} usable CPUs, {m['threads']} threads; load average "
            f"{m['load_average_1_5_15']}; versions {m['versions']}.",
            f"{report['iterations']} timed rounds after {report['warmup']} warm-up rounds; all cases "
            "alternate in one process (ratios within this run are what count).", "", "## Latency", ""]
    body = head + latency_table(report)
    for title, lines in (("Roofline", roofline_lines(report)), ("Where the time goes", profile_lines(report)),
                         ("Accuracy parity", parity_lines(report)), ("Goals", goal_lines(report))):
        if lines:
            body += ["", f"## {title}", "", *lines]
    if report.get("skipped"):
        body += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())]
    body += [f"- {n}" for n in report.get("notes", [])]
    return "\n".join(body) + "\n"


def latency_png(report: dict, raw_ms: dict[str, list[float]], path: Path) -> Path:
    matplotlib.use("Agg")

    names = list(raw_ms)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4))
    ax.boxplot([raw_ms[n] for n in names], whis=(1, 99), showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    ax.set_ylabel("latency per frame (ms)")
    ax.set_title(f"latency distribution, {report['iterations']} alternating rounds (whiskers p1–p99)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parity_png(report: dict, path: Path) -> Path:
    """Each backend's image scores against the reference's: on the diagonal means the same verdicts."""

    matplotlib.use("Agg")

    ref = report["parity"]["reference"]
    scores = {n: b["image_scores"] for n, b in report["parity"]["backends"].items()}
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        if name != ref:
            b = report["parity"]["backends"][name]
            ax.scatter(scores[ref], s, s=10, label=f"{name} (AUROC {_f(b['auroc'], '.3f')})")
    lo = min(min(v) for v in scores.values())
    hi = max(max(v) for v in scores.values())
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1)
    ax.set_xlabel(f"{ref} image score")
    ax.set_ylabel("backend image score")
    ax.set_title("score parity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_reports(report: dict, raw_ms: dict[str, list[float]], out_dir: Path,
                  stem: str = "bench") -> dict[str, Path]:
    """`stem`.json, `stem`.md, `stem`-latency.png and (with parity) `stem`-parity.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md"}
    paths["json"].write_text(json.dumps({**report, "raw_end_to_end_ms": raw_ms}, indent=2))
    paths["markdown"].write_text(markdown(report))
    if raw_ms:
        paths["latency_png"] = latency_png(report, raw_ms, out_dir / f"{stem}-latency.png")
    if report.get("parity") and len(report["parity"]["backends"]) > 1:
        paths["parity_png"] = parity_png(report, out_dir / f"{stem}-parity.png")
    return paths
