"""`slsg synth`: byte-identical trees for one seed, the official LOCO layout, masks that match the config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from slsg.cli import app
from slsg.data import open_dataset, read_defect_masks, read_mask
from slsg.data.synthetic_scene import LOGICAL, STRUCTURAL, SynthCounts, write_dataset

runner = CliRunner()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    result = runner.invoke(app, ["synth", str(out / "a"), "--small", "--seed", "4"])
    assert result.exit_code == 0, result.output
    return out


def test_same_seed_twice_gives_byte_identical_trees(small_set):
    result = runner.invoke(app, ["synth", str(small_set / "b"), "--small", "--seed", "4"])
    assert result.exit_code == 0, result.output
    a, b = tree_digest(small_set / "a"), tree_digest(small_set / "b")
    assert len(a) > 60 and a == b


def test_another_seed_gives_other_images(tmp_path, small_set):
    write_dataset(tmp_path, seed=5, counts=SynthCounts(2, 0, 0, 0, 0))
    first = (tmp_path / "synthetic_box" / "train" / "good" / "000.png").read_bytes()
    assert first != (small_set / "a" / "synthetic_box" / "train" / "good" / "000.png").read_bytes()


def test_layout_passes_the_loco_reader_with_consistent_masks(small_set):
    (cat,) = open_dataset(small_set / "a")
    assert (cat.name, cat.layout) == ("synthetic_box", "loco")
    assert cat.report.issues == []
    counts = cat.counts()
    assert counts[("train", "good")] == 24 and counts[("validation", "good")] == 8
    assert counts[("test", "good")] == counts[("test", "logical_anomalies")] == 8
    assert counts[("test", "structural_anomalies")] == 8
    config = {e["defect_name"]: e for e in cat.defects_config}
    assert set(config) == set(LOGICAL + STRUCTURAL)
    assert all(set(e) == {"defect_name", "pixel_value", "saturation_threshold", "relative_saturation"}
               for e in config.values())
    allowed = {"logical": {config[n]["pixel_value"] for n in LOGICAL},
               "structural": {config[n]["pixel_value"] for n in STRUCTURAL}}
    for s in cat.test:
        if s.is_good:
            assert s.masks == [] and read_mask(s) is None
            continue
        defects = read_defect_masks(s)
        assert defects, s.path
        for m, value in defects:
            assert m.shape == (256, 256) and value in allowed[s.kind]
            assert set(np.unique(m).tolist()) == {0, value}
        assert read_mask(s).any()


def test_generation_record_names_every_test_defect(small_set):
    record = json.loads((small_set / "a" / "synthetic_box" / "generation.json").read_text())
    assert record["seed"] == 4 and len(record["test_defects"]) == 16


def test_existing_output_is_refused_without_force(small_set):
    result = runner.invoke(app, ["synth", str(small_set / "a"), "--small"])
    assert result.exit_code == 2 and "already exists" in result.output


def test_preview_writes_a_contact_sheet(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path), "--small", "--size", "128", "--preview"])
    assert result.exit_code == 0, result.output

    sheet = cv2.imread(str(tmp_path / "synthetic_box_preview.png"))
    assert sheet is not None and sheet.shape == (4 * 128, 7 * 128, 3)
