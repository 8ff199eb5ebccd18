"""`slsg export`: prints parity and writes a bundle; refusals are one clear line and exit code 2."""

from __future__ import annotations

from typer.testing import CliRunner

from edge_runtime.bundle import load_bundle
from export.tests.conftest import make_run
from slsg.cli import app

runner = CliRunner()


def test_export_writes_a_bundle_and_prints_parity(effnet_run, tmp_path):
    out = tmp_path / "model.slsg"
    res = runner.invoke(app, ["export", str(effnet_run), "-o", str(out), "--no-simplify"])
    assert res.exit_code == 0, res.output
    assert "|Δ map| p50" in res.output and "score ranking" in res.output and "wrote" in res.output
    assert load_bundle(out).models["fp32"].name == "model.onnx"


def test_missing_threshold_is_a_clean_refusal(tmp_path):
    run = make_run(tmp_path / "run", "efficientnet_lite0", threshold=False)
    res = runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "m.slsg")])
    assert res.exit_code == 2
    assert "--no-threshold" in res.output and "Traceback" not in res.output


def test_not_a_run_folder_is_a_clean_refusal(tmp_path):
    res = runner.invoke(app, ["export", str(tmp_path), "-o", str(tmp_path / "m.slsg")])
    assert res.exit_code == 2 and "config.json" in res.output


def test_fused_option_gives_a_plugin_bundle_or_a_clean_refusal(effnet_run, tmp_path):
    """Until the model's fused path exports, the option must fail with one line, exit 2 and no bundle."""
    out = tmp_path / "m.slsg"
    res = runner.invoke(app, ["export", str(effnet_run), "-o", str(out), "--fused-graph-attention"])
    assert "Traceback" not in res.output
    if res.exit_code == 0:
        assert load_bundle(out).manifest.plugins == ["slsg::GraphAttention"]
    else:
        assert res.exit_code == 2 and "fused" in res.output and not out.exists()
