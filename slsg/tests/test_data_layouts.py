"""Layout readers and bad-data reporting, on small trees built in a temp folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from slsg.data import (
    BadImageError,
    DatasetError,
    load_images,
    open_dataset,
    read_defect_masks,
    read_image,
    read_mask,
)

REPO = Path(__file__).resolve().parents[2]
BOTTLE = REPO / ".." / "shared" / "datasets" / "mvtec_ad_bottle_256"


def img(path: Path, value: int = 100, shape=(40, 48, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return path


def mask(path: Path, value: int = 255, shape=(40, 48)) -> Path:
    m = np.zeros(shape, np.uint8)
    m[5:15, 5:15] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), m)
    return path


def mvtec_tree(root: Path) -> Path:
    for i in range(3):
        img(root / "train" / "good" / f"{i:03d}.png")
    img(root / "test" / "good" / "000.png")
    for i in range(2):
        img(root / "test" / "crack" / f"{i:03d}.png")
        mask(root / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    return root


def loco_tree(root: Path, flat: bool = False) -> Path:
    for i in range(3):
        img(root / "train" / "good" / f"{i:03d}.png")
    img(root / "validation" / "good" / "000.png")
    img(root / "test" / "good" / "000.png")
    for kind, value in (("logical_anomalies", 1), ("structural_anomalies", 2)):
        img(root / "test" / kind / "000.png")
        if flat:
            mask(root / "ground_truth" / kind / "000_mask.png")
        else:
            mask(root / "ground_truth" / kind / "000" / "000.png", value)
            mask(root / "ground_truth" / kind / "000" / "001.png", value)
    cfg = [{"defect_name": "a", "pixel_value": 1, "saturation_threshold": 1.0, "relative_saturation": True}]
    (root / "defects_config.json").write_text(json.dumps(cfg))
    return root


def test_mvtec_ad_layout_reads_splits_labels_and_masks(tmp_path):
    (cat,) = open_dataset(mvtec_tree(tmp_path / "widget"))
    assert (cat.name, cat.layout) == ("widget", "mvtec_ad")
    assert len(cat.train) == 3 and cat.validation == []
    assert sorted((s.label, s.kind, len(s.masks)) for s in cat.test) == [
        ("crack", "structural", 1), ("crack", "structural", 1), ("good", "good", 0)]
    assert cat.report.issues == [] and cat.defects_config is None


def test_loco_official_layout_reads_one_png_per_defect(tmp_path):
    (cat,) = open_dataset(loco_tree(tmp_path / "box"))
    assert cat.layout == "loco" and len(cat.validation) == 1
    logical = next(s for s in cat.test if s.label == "logical_anomalies")
    assert logical.kind == "logical" and len(logical.masks) == 2
    assert [v for _, v in read_defect_masks(logical)] == [1, 1]
    m = read_mask(logical)
    assert m.dtype == bool and m.shape == (40, 48) and m.sum() == 100
    assert cat.defects_config[0]["pixel_value"] == 1


def test_loco_flat_layout_reads_merged_masks(tmp_path):
    (cat,) = open_dataset(loco_tree(tmp_path / "box", flat=True))
    assert cat.layout == "loco_flat"
    structural = next(s for s in cat.test if s.label == "structural_anomalies")
    assert structural.kind == "structural" and [p.name for p in structural.masks] == ["000_mask.png"]


def test_plain_folder_of_good_images_with_optional_test(tmp_path):
    root = tmp_path / "parts"
    for i in range(4):
        img(root / f"good_{i}.jpg")
    (cat,) = open_dataset(root)
    assert cat.layout == "folder" and len(cat.train) == 4 and cat.test == []
    img(root / "test" / "dent" / "000.png")
    (cat,) = open_dataset(root)
    assert [s.label for s in cat.test] == ["dent"] and cat.test[0].masks == []
    assert [i.action for i in cat.report.issues] == ["kept"]  # image-level only, and said so


def test_dataset_root_with_several_categories_and_category_choice(tmp_path):
    mvtec_tree(tmp_path / "a")
    loco_tree(tmp_path / "b")
    assert [c.name for c in open_dataset(tmp_path)] == ["a", "b"]
    assert [c.layout for c in open_dataset(tmp_path, "b")] == ["loco"]
    assert [c.name for c in open_dataset(tmp_path / "a", "a")] == ["a"]
    with pytest.raises(DatasetError, match="no category 'zzz'. Available: a, b"):
        open_dataset(tmp_path, "zzz")


def test_missing_train_good_is_an_error_that_says_what_to_create(tmp_path):
    root = mvtec_tree(tmp_path / "widget")
    for p in (root / "train" / "good").iterdir():
        p.unlink()
    (root / "train" / "good").rmdir()
    with pytest.raises(DatasetError, match=r"no train/good/ folder.*Create"):
        open_dataset(root)


def test_mask_without_image_is_reported(tmp_path):
    root = mvtec_tree(tmp_path / "widget")
    mask(root / "ground_truth" / "crack" / "007_mask.png")
    (cat,) = open_dataset(root)
    (issue,) = cat.report.issues
    assert issue.path.name == "007_mask.png" and "mask without an image" in issue.problem
    assert "Delete the mask" in issue.fix


def test_defect_image_without_mask_is_kept_for_image_metrics_and_reported(tmp_path):
    root = mvtec_tree(tmp_path / "widget")
    img(root / "test" / "crack" / "009.png")
    (cat,) = open_dataset(root)
    (kept,) = [s for s in cat.test if s.path.name == "009.png"]
    assert kept.label == "crack" and kept.kind == "structural" and kept.masks == []
    assert not cat.report.skipped
    (issue,) = cat.report.issues
    assert issue.action == "kept" and "without a mask" in issue.problem and "009_mask.png" in issue.fix


def test_truncated_image_is_reported_and_read_image_names_it(tmp_path):
    root = mvtec_tree(tmp_path / "widget")
    bad = root / "train" / "good" / "001.png"
    bad.write_bytes(bad.read_bytes()[:40])
    (cat,) = open_dataset(root)
    assert len(cat.train) == 2
    (issue,) = cat.report.skipped
    assert issue.path == bad and "truncated" in issue.problem
    with pytest.raises(BadImageError, match=r"001\.png.*truncated.*Replace"):
        read_image(bad)


def test_unreadable_file_found_at_decode_is_reported_by_load_images(tmp_path):
    root = mvtec_tree(tmp_path / "widget")
    bad = root / "train" / "good" / "002.png"
    data = bytearray(bad.read_bytes())
    data[8:-12] = b"\x00" * (len(data) - 20)  # signature and end chunk intact, body garbage
    bad.write_bytes(bytes(data))
    (cat,) = open_dataset(root)
    images, kept = load_images(cat.train, 32, cat.report)
    assert len(images) == 2 and bad not in [s.path for s in kept]
    assert any(i.path == bad for i in cat.report.skipped)


def test_non_image_file_in_an_image_folder_is_reported(tmp_path):
    root = mvtec_tree(tmp_path / "widget")
    (root / "train" / "good" / "notes.txt").write_text("hi")
    (cat,) = open_dataset(root)
    assert [i.path.name for i in cat.report.skipped] == ["notes.txt"]


def test_16bit_gray_rgba_palette_images_are_converted_and_reported(tmp_path):
    root = tmp_path / "odd"
    d = root / "train" / "good"
    d.mkdir(parents=True)
    cv2.imwrite(str(d / "a16.png"), np.full((20, 20, 3), 40000, np.uint16))
    cv2.imwrite(str(d / "gray.png"), np.full((20, 20), 77, np.uint8))
    cv2.imwrite(str(d / "rgba.png"), np.full((20, 20, 4), 200, np.uint8))
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).convert("P").save(d / "pal.png")
    img(d / "plain.png", shape=(20, 20, 3))
    (cat,) = open_dataset(root)
    images, kept = load_images(cat.train, 32, cat.report)
    assert len(images) == 5 and all(i.shape == (32, 32, 3) and i.dtype == np.uint8 for i in images)
    notes = {p.name: n for p, n in cat.report.converted}
    assert set(notes) == {"a16.png", "gray.png", "rgba.png", "pal.png"}
    assert "16-bit" in notes["a16.png"] and "grayscale" in notes["gray.png"]
    assert "alpha" in notes["rgba.png"] and "palette" in notes["pal.png"]
    assert images[[s.path.name for s in kept].index("a16.png")][0, 0, 0] == round(40000 / 257)


@pytest.mark.skipif(not BOTTLE.is_dir(), reason=f"{BOTTLE} is absent")
def test_mvtec_ad_bottle_reads_as_published():
    (cat,) = open_dataset(BOTTLE)
    assert cat.layout == "mvtec_ad" and cat.report.issues == []
    assert len(cat.train) == 209 and len(cat.test) == 83
    assert sum(s.is_good for s in cat.test) == 20
    assert sum(len(s.masks) for s in cat.test) == 63
