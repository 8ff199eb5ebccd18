"""`slsg threshold RUN DATA` sets an imported RUN's threshold without retraining; `slsg train` will not
overwrite a RUN it did not make unless --force."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from export.run_data import threshold_data
from slsg.checkpoint import save_run
from slsg.cli import app
from slsg.commands.train import refuse_foreign_run
from slsg.data.synthetic_scene import SynthCounts, write_dataset
from slsg.model import ModelConfig, build_model

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), counts=SynthCounts(10, 12, 2, 2, 2), size=64)


@pytest.fixture
def imported_run(tmp_path):
    """What `slsg import-official` writes: weights and a config with a source, no training, no threshold."""

    torch.manual_seed(0)
    save_run(tmp_path / "run", build_model(ModelConfig(size=64), "random"), {"source": {"official": "bottle.tch"}})
    return tmp_path / "run"


def test_threshold_sets_the_threshold_from_validation_images_and_keeps_history(imported_run, data):
    res = runner.invoke(app, ["threshold", str(imported_run), str(data)])
    assert res.exit_code == 0, res.output
    first = json.loads((imported_run / "config.json").read_text())["threshold"]
    assert first["n_good"] == 12 and first["data"]["split"] == "validation"  # LOCO validation/good
    assert first["data"]["root"] == str(data) and first["quantiles"]
    res = runner.invoke(app, ["threshold", str(imported_run), str(data), "--false-reject-rate", "0.2"])
    assert res.exit_code == 0, res.output
    config = json.loads((imported_run / "config.json").read_text())
    assert config["threshold"]["false_reject_rate"] == 0.2 and config["threshold"]["value"] < first["value"]
    assert config["threshold_history"][-1]["previous"]["value"] == first["value"]
    assert config["source"] == {"official": "bottle.tch"}  # nothing else of the RUN changed


def test_export_thresholds_come_from_the_images_threshold_used(imported_run, data):
    runner.invoke(app, ["threshold", str(imported_run), str(data)])
    config = json.loads((imported_run / "config.json").read_text())
    found = threshold_data(config)
    assert found is not None and len(found.validation) == config["threshold"]["n_good"]


def test_train_refuses_to_overwrite_an_imported_run(imported_run, data):
    weights = (imported_run / "model.safetensors").read_bytes()
    res = runner.invoke(app, ["train", str(data), "-o", str(imported_run), "--steps", "0", "--size", "64"])
    assert res.exit_code == 2
    assert "slsg threshold" in res.output and "--force" in res.output and "bottle.tch" in res.output
    assert (imported_run / "model.safetensors").read_bytes() == weights


def test_force_or_a_run_made_by_train_is_not_refused(imported_run, tmp_path):
    refuse_foreign_run(imported_run, force=True)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "config.json").write_text(json.dumps({"model": {}, "train": {"steps": 1}}))
    refuse_foreign_run(ours, force=False)
    refuse_foreign_run(tmp_path / "new", force=False)



def test_the_old_name_calibrate_still_sets_the_threshold_and_says_the_new_name(imported_run, data):
    res = runner.invoke(app, ["calibrate", str(imported_run), str(data)])
    assert res.exit_code == 0, res.output
    assert "`slsg calibrate` is now `slsg threshold`" in res.output
    assert json.loads((imported_run / "config.json").read_text())["threshold"]["n_good"] == 12
