"""The teach loop measured: a line whose good parts drift, false rejects before and after confirming N of them good.

A bundle meets the test images of its dataset changed the way a line changes — darker light, or a new supplier's
colour. The operator reviews the rejects: the first N drifted good parts that were rejected are confirmed good, the
first few rejected defects confirmed defective, and `edge_runtime.teach.refit` makes a new version through its gate
(torch-free, the bundle's ONNX Runtime model), once with thresholds only and once with the heads' statistics too.
Both versions then judge the parts nobody reviewed: false rejects on
the held-out drifted good parts, defects caught among the held-out drifted defects, with 95 % intervals. Refit wall
time is the refit itself (scoring the confirmed frames, the gate, writing the version).

    python -m benchmarks.teach_loop BUNDLE DATA [--drift light|colour] [--confirm 5,10,20,50] [--defects 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.preprocess import prepare
from edge_runtime.rethreshold import score_frames
from edge_runtime.statistics import binomial_interval
from edge_runtime.teach.refit import refit
from edge_runtime.teach.store import DEFECT, GOOD, LineStore
from slsg.data import open_dataset, read_image


def darker(image: np.ndarray) -> np.ndarray:
    """The light falls by a fifth (a lamp ageing, a shade moved)."""
    return np.clip(image.astype(np.float32) * 0.8, 0, 255).astype(np.uint8)


def new_colour(image: np.ndarray) -> np.ndarray:
    """A new supplier's material: a warmer, slightly less saturated part."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + 8) % 180
    hsv[..., 1] *= 0.85
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)


DRIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"light": darker, "colour": new_colour}


@dataclass
class Parts:
    goods: list[np.ndarray]
    defects: list[np.ndarray]


def read_parts(data: Path, drift: Callable[[np.ndarray], np.ndarray]) -> Parts:
    """The test images of the dataset (any layout `slsg train` reads), drifted: the good ones and the defective."""
    test = open_dataset(data)[0].test
    return Parts([drift(read_image(s.path)) for s in test if s.is_good],
                 [drift(read_image(s.path)) for s in test if not s.is_good])


def scores(bundle_dir: Path, images: list[np.ndarray], threads: int) -> tuple[np.ndarray, float]:
    """Each image's score under the bundle's FP32 model in ONNX Runtime, and that model's threshold."""
    bundle = load_bundle(bundle_dir)
    backend = select_backend(bundle, "onnx", threads)
    prepared = np.stack([prepare(im, bundle.size) for im in images])
    return score_frames(backend, prepared), bundle.threshold_for("fp32").value


def rate(k: int, n: int) -> dict:
    lo, hi = binomial_interval(k, n)
    return {"k": int(k), "n": int(n), "rate": k / n if n else float("nan"), "low": lo, "high": hi}


def one_round(bundle: Path, parts: Parts, good_scores: np.ndarray, defect_scores: np.ndarray, threshold: float,
              n_confirm: int, n_defects: int, threads: int, work: Path, heads: bool = True) -> dict:
    """Confirm the first `n_confirm` rejected goods and `n_defects` rejected defects, refit, judge the rest."""
    rejected_goods = [i for i, s in enumerate(good_scores) if s > threshold][:n_confirm]  # in the order they came
    rejected_defects = [i for i, s in enumerate(defect_scores) if s > threshold][:n_defects]
    copy = work / f"n{n_confirm}-{heads}" / "model.slsg"
    shutil.copytree(bundle, copy)
    store = LineStore(copy)
    for i in rejected_goods:
        store.review(f"good{i}", parts.goods[i], {"score": float(good_scores[i])}, GOOD, "benchmark")
    for i in rejected_defects:
        store.review(f"defect{i}", parts.defects[i], {"score": float(defect_scores[i])}, DEFECT, "benchmark")
    t0 = time.perf_counter()
    report = refit(store, "benchmark", threads, heads=heads)
    wall = time.perf_counter() - t0
    held_goods = np.setdiff1d(np.arange(len(parts.goods)), rejected_goods)
    held_defects = np.setdiff1d(np.arange(len(parts.defects)), rejected_defects)
    result = {"refit": "heads and thresholds" if heads else "thresholds only",
              "confirmed_goods": len(rejected_goods), "confirmed_defects": len(rejected_defects),
              "accepted": report.accepted, "reasons": report.reasons, "refit_s": wall,
              "before": {"false_rejects": rate(int((good_scores[held_goods] > threshold).sum()), len(held_goods)),
                         "caught": rate(int((defect_scores[held_defects] > threshold).sum()), len(held_defects))}}
    if report.accepted:
        v2 = store.version_path(report.version)
        g2, t2 = scores(v2, [parts.goods[i] for i in held_goods], threads)
        d2, _ = scores(v2, [parts.defects[i] for i in held_defects], threads)
        result["after"] = {"false_rejects": rate(int((g2 > t2).sum()), len(g2)),
                           "caught": rate(int((d2 > t2).sum()), len(d2)), "threshold": t2}
    return result


def _pct(r: dict) -> str:
    return f"{r['k']}/{r['n']} ({100 * r['rate']:.1f} %, {100 * r['low']:.1f}–{100 * r['high']:.1f})"


def report_table(results: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col in ("refit", "confirmed good / defect", "result", "false rejects before", "after",
                "defects caught before", "after", "refit s"):
        table.add_column(col)
    for r in results:
        after = r.get("after")
        table.add_row(r["refit"], f"{r['confirmed_goods']} / {r['confirmed_defects']}",
                      "accepted" if r["accepted"] else "refused: " + "; ".join(r["reasons"]),
                      _pct(r["before"]["false_rejects"]), _pct(after["false_rejects"]) if after else "–",
                      _pct(r["before"]["caught"]), _pct(after["caught"]) if after else "–", f"{r['refit_s']:.2f}")
    return table


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", type=Path, help="the dataset the bundle was trained on (its test/ folder is used)")
    ap.add_argument("--drift", choices=sorted(DRIFTS), default="light")
    ap.add_argument("--confirm", default="5,10,20,50", help="numbers of rejected good parts to confirm")
    ap.add_argument("--defects", type=int, default=3, help="rejected defects to confirm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    console = Console()
    parts = read_parts(args.data, DRIFTS[args.drift])
    console.print(f"{len(parts.goods)} good and {len(parts.defects)} defective test images, drift: {args.drift}")
    good_scores, threshold = scores(args.bundle, parts.goods, args.threads)
    defect_scores, _ = scores(args.bundle, parts.defects, args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for heads in (False, True):
            for n in (int(x) for x in args.confirm.split(",")):
                results.append(one_round(args.bundle, parts, good_scores, defect_scores, threshold, n, args.defects,
                                         args.threads, Path(tmp), heads))
                console.print(f"{results[-1]['refit']}, {n} confirmed: "
                              f"{'accepted' if results[-1]['accepted'] else 'refused'}")
    console.print(report_table(results, f"Teach loop on {args.data.name}, drift {args.drift}: parts nobody reviewed"))
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "data": str(args.data), "drift": args.drift,
                                         "results": results}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
