"""`slsg evaluate` prints the authors' table for one category or several (one RUN per category) and their mean."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from slsg.checkpoint import save_run
from slsg.cli import app
from slsg.model import ModelConfig, build_model


def _run(path):
    threshold = {"value": 0.5, "false_reject_rate": 0.01, "n_good": 4}
    save_run(path, build_model(ModelConfig(backbone="efficientnet_lite0", size=64), "random"), {"threshold": threshold})
    return path


def test_several_categories_each_with_its_run(tiny_loco, tmp_path):
    data = tmp_path / "data"
    for name in ("box_a", "box_b"):
        shutil.copytree(tiny_loco, data / name)
        _run(tmp_path / "runs" / name)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "runs"), str(data), "--no-pixel", "--quiet",
                                      "--json", str(out), "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert "box_a" in result.output and "box_b" in result.output and "Logical" in result.output
    report = json.loads(out.read_text())
    assert set(report["thresholds"]) == {"box_a", "box_b"}
    assert len(list((tmp_path / "plots").glob("scores_*.png"))) == 2


def test_a_missing_category_run_is_a_clear_error(tiny_loco, tmp_path):
    data = tmp_path / "data"
    for name in ("box_a", "box_b"):
        shutil.copytree(tiny_loco, data / name)
    _run(tmp_path / "runs" / "box_a")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "runs"), str(data), "--no-pixel", "--quiet"])
    assert result.exit_code == 2 and "no RUN for box_b" in result.output


def test_an_evaluation_without_defect_images_says_so_in_one_line_and_reports_false_rejects(tiny_loco, tmp_path):
    data = tmp_path / "goods_only"
    shutil.copytree(tiny_loco, data)
    for folder in ("logical_anomalies", "structural_anomalies"):
        shutil.rmtree(data / "test" / folder)
        shutil.rmtree(data / "ground_truth" / folder, ignore_errors=True)
    run = _run(tmp_path / "run")
    result = CliRunner().invoke(app, ["evaluate", str(run), str(data), "--no-pixel", "--quiet",
                                      "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert "no defect images under test/, so no AUROC" in " ".join(result.output.split())
    assert "flagged at the threshold" in result.output and "Structural" not in result.output  # no table of dashes
