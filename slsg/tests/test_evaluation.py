"""End-to-end evaluation on tiny PNG trees with a real (brightness) predictor and injected file readers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from edge_runtime.preprocess import prepare
from edge_runtime.scoring import image_score
from slsg.data import open_dataset
from slsg.evaluation import ImageRecord, Readers, evaluate_category, evaluate_many, good_scores, threshold_check
from slsg.metrics import au_spro, defects_from_channels, image_aurocs
from slsg.reports import render_table, results_to_json, score_histogram_png

NATIVE = (64, 64)
SIZE = (32, 32)
CONFIG = [
    {"defect_name": "missing", "pixel_value": 255, "saturation_threshold": 1.0, "relative_saturation": True},
    {"defect_name": "scratch", "pixel_value": 200, "saturation_threshold": 100, "relative_saturation": False},
]


@dataclass
class Sample:  # the slsg.data contract's fields
    path: Path
    split: str
    label: str
    kind: str
    masks: list[Path] = field(default_factory=list)


@dataclass
class Category:
    name: str
    root: Path
    layout: str
    train: list
    validation: list
    test: list[Sample]
    defects_config: list[dict] | None


def brightness(batch: np.ndarray) -> np.ndarray:
    """A fake-but-real predictor: the grey level is the anomaly probability."""
    return np.stack([cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in batch]).astype(np.float32) / 255.0


def _readers() -> Readers:
    def read_image(path):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot decode {path}")
        return img

    def read_defect_masks(sample):
        out = []
        for p in sample.masks:
            m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            out.append((m, int(m.max())))
        return out

    return Readers(read_image, read_defect_masks)


def _write(root: Path, rel: str, image: np.ndarray) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def _square(level: int, y: int, x: int, rng) -> tuple[np.ndarray, np.ndarray]:
    img = rng.integers(0, 30, (*NATIVE, 3), dtype=np.uint8)
    region = np.zeros(NATIVE, bool)
    region[y : y + 32, x : x + 32] = True  # even-aligned: exact after the 2× area downscale
    img[region] = level
    return img, region


def _loco(root: Path, spot_in_good: bool, logical_level: int = 120) -> Category:
    rng = np.random.default_rng(0)
    test = []
    for i in range(3):
        img, _ = _square(255, 16, 16, rng) if (spot_in_good and i == 2) else (
            rng.integers(0, 30, (*NATIVE, 3), dtype=np.uint8), None)
        test.append(Sample(_write(root, f"test/good/{i:03d}.png", img), "test", "good", "good"))
    for kind, level, value in (("logical", logical_level, 255), ("structural", 255, 200)):
        for i in range(2):
            img, region = _square(level, 8 + 16 * i, 24, rng)
            mask = region.astype(np.uint8) * value
            gt = _write(root, f"ground_truth/{kind}_anomalies/{i:03d}/000.png", mask)
            path = _write(root, f"test/{kind}_anomalies/{i:03d}.png", img)
            test.append(Sample(path, "test", f"{kind}_anomalies", kind, [gt]))
    return Category("box", root, "loco", [], [], test, CONFIG)


def test_perfect_predictor_reaches_one_everywhere(tmp_path):
    # equal square levels: a bilinear-blurred edge of one image never outranks another's defect pixels
    cat = _loco(tmp_path, spot_in_good=False, logical_level=255)
    r = evaluate_category(brightness, cat, SIZE, batch=3, progress=False, readers=_readers())
    m = r.metrics()
    for key in ("structural", "logical", "overall", "mean_ls", "overall_max", "pixel_auroc", "au_spro@0.05",
                "au_spro@0.3"):
        assert m[key] == pytest.approx(1.0), key
    assert set(r.pixel) == {"all", "logical", "structural"}
    assert r.pixel["logical"].n_images == 5 and r.pixel["logical"].n_defects == 2
    assert [i.native_size for i in r.images] == [NATIVE] * 7


def test_split_aurocs_match_hand_count_and_pixel_metrics_match_direct_computation(tmp_path):
    cat = _loco(tmp_path, spot_in_good=True)  # one good image scores 1.0, like the structural ones
    r = evaluate_category(brightness, cat, SIZE, progress=False, readers=_readers(), limits=(0.05, 0.3, 1.0))
    assert r.image.logical == pytest.approx(4 / 6)
    assert r.image.structural == pytest.approx(5 / 6)  # ties with the bright good image count ½
    assert r.image.overall == pytest.approx(9 / 12)
    assert r.image.mean_ls == pytest.approx(0.75)
    # the same AU-sPRO computed by hand from the maps, resized up the documented way
    readers = _readers()
    maps, defects = [], []
    for s in cat.test:
        if s.kind == "structural":
            continue
        small = brightness(prepare(readers.image(s.path), SIZE)[None])[0]
        maps.append(cv2.resize(small, NATIVE[::-1], interpolation=cv2.INTER_LINEAR))
        defects.append(defects_from_channels(readers.defect_masks(s), CONFIG) if s.masks else [])
    expected = au_spro(maps, defects, limits=(0.05, 0.3, 1.0), tolerance=0.0)
    logical, structural = r.pixel["logical"], r.pixel["structural"]
    for limit, value in expected.items():
        assert logical.au_spro[limit] == pytest.approx(value, abs=logical.au_spro_bound[limit])
    assert r.au_spro(0.3) == pytest.approx(0.5 * (logical.au_spro[0.3] + structural.au_spro[0.3]))
    assert 0.0 < r.pixel["all"].pixel_auroc < 1.0


def _mvtec(root: Path) -> Category:
    rng = np.random.default_rng(1)
    test = [Sample(_write(root, f"test/good/{i:03d}.png", rng.integers(0, 30, (*NATIVE, 3), dtype=np.uint8)),
                   "test", "good", "good") for i in range(3)]
    for label, level in (("crack", 200), ("hole", 200)):
        img, region = _square(level, 0, 0, rng)
        gt = _write(root, f"ground_truth/{label}/000_mask.png", region.astype(np.uint8) * 255)
        test.append(Sample(_write(root, f"test/{label}/000.png", img), "test", label, "structural", [gt]))
    test.append(Sample(_write(root, "test/hole/001.png", np.zeros((*NATIVE, 3), np.uint8)),
                       "test", "hole", "structural", []))  # darker than every good image; no mask
    return Category("bottle", root, "mvtec_ad", [], [], test, None)


def test_mvtec_layout_gives_per_defect_rows_and_table_and_json(tmp_path):
    categories = [_mvtec(tmp_path / "a"), _loco(tmp_path / "b", False, logical_level=255)]
    results = evaluate_many(lambda c: brightness, categories, SIZE, progress=False, readers=_readers())
    bottle = results[0]
    assert bottle.image.logical is None and bottle.image.mean_ls is None
    assert bottle.metrics()["defect:crack"] == pytest.approx(1.0)
    assert bottle.metrics()["defect:hole"] == pytest.approx(0.5)  # one of two hole images ranks last
    assert set(bottle.pixel) == {"all"} and "cover 2 of 3 anomalous images: 1 have no mask" in bottle.pixel_note
    console = Console(record=True, width=160)
    console.print(render_table(results))
    text = console.export_text()
    for row in ("Structural", "Logical", "Mean (all test images)", "½(L+S)", "Pixel AUROC", "AU-sPRO@0.05",
                "AU-sPRO@0.3", "crack", "bottle", "box", "mean"):
        assert row in text
    doc = json.loads(json.dumps(results_to_json(results)))
    assert doc["categories"]["box"]["metrics"]["au_spro@0.3"] == pytest.approx(1.0)
    assert doc["mean"]["structural"] == pytest.approx(0.5 * (bottle.image.structural + 1.0))
    assert doc["categories"]["bottle"]["pixel_groups"]["all"]["au_spro"]["0.05"] == pytest.approx(1.0)


def test_histogram_png_and_good_scores(tmp_path):
    cat = _loco(tmp_path / "d", spot_in_good=False)
    r = evaluate_category(brightness, cat, SIZE, progress=False, readers=_readers(), pixel=False)
    assert r.pixel == {} and r.pixel_note == "pixel metrics not asked for"
    png = score_histogram_png(r, 0.5, tmp_path / "plots" / "hist.png")
    assert cv2.imread(str(png)) is not None
    goods = [s for s in cat.test if s.kind == "good"]
    scores = good_scores(brightness, goods, SIZE, batch=2, readers=_readers())
    readers = _readers()
    expected = image_score(brightness(np.stack([prepare(readers.image(s.path), SIZE) for s in goods])))
    np.testing.assert_allclose(scores, expected)


def test_unreadable_image_is_skipped_and_reported_and_bad_predictor_is_refused(tmp_path):
    cat = _loco(tmp_path, spot_in_good=False)
    broken = tmp_path / "test" / "good" / "009.png"
    broken.write_bytes(b"not a png")
    cat.test.append(Sample(broken, "test", "good", "good"))
    r = evaluate_category(brightness, cat, SIZE, progress=False, readers=_readers(), pixel=False)
    assert len(r.images) == 7 and r.skipped[0][0] == str(broken)
    with pytest.raises(ValueError, match="cannot read 1 image"):
        good_scores(brightness, [s for s in cat.test if s.kind == "good"], SIZE, readers=_readers())
    with pytest.raises(ValueError, match="N×H×W"):
        evaluate_category(lambda b: np.zeros((1, 2, 3, 4)), cat, SIZE, progress=False, readers=_readers())


def test_a_defect_folder_without_masks_is_evaluated_at_image_level(tmp_path: Path) -> None:
    """Defect photos without masks (the common case on a line) count for every image metric, in the MVTec layout."""

    root = tmp_path / "widget"
    for split, label, grey, n in (("train", "good", 40, 4), ("test", "good", 40, 3), ("test", "dent", 220, 3),
                                  ("test", "crack", 200, 2)):
        (root / split / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / split / label / f"{i:03d}.png"), np.full((*NATIVE, 3), grey + i, np.uint8))
    (root / "ground_truth" / "crack").mkdir(parents=True)
    cv2.imwrite(str(root / "ground_truth" / "crack" / "000_mask.png"), np.full(NATIVE, 255, np.uint8))
    (cat,) = open_dataset(root)
    result = evaluate_category(brightness, cat, SIZE, progress=False)
    assert sorted(i.label for i in result.images) == ["crack"] * 2 + ["dent"] * 3 + ["good"] * 3
    assert result.image.overall == 1.0 and result.image.per_defect["dent"] == 1.0
    assert "cover 1 of 5 anomalous images: 4 have no mask" in result.pixel_note  # what pixel metrics cover


def test_the_threshold_check_reports_false_rejects_with_their_interval_and_a_shift() -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(1.5, 0.3, 40)  # test goods from another session: they score above the reference
    bad = rng.normal(3.0, 0.3, 20)
    images = [ImageRecord(f"{i}.png", "good", "good", float(s), 0.0, NATIVE, {"slsg": float(s)})
              for i, s in enumerate(good)]
    images += [ImageRecord(f"d{i}.png", "dent", "structural", float(s), 0.0, NATIVE, {"slsg": float(s)})
               for i, s in enumerate(bad)]
    scores = np.r_[good, bad]
    kinds = ["good"] * 40 + ["structural"] * 20
    result = CategoryResultStub(images, image_aurocs(scores, kinds, [i.label for i in images]))
    reference = {"heads": {"slsg": list(rng.normal(1.0, 0.3, 100))}, "score": list(rng.normal(1.0, 0.3, 100))}
    check = threshold_check(result, threshold=1.7, asked=0.01, reference=reference)
    assert check.n_good == 40 and check.false_rejects == int(np.sum(good > 1.7)) and check.caught == 20
    assert check.interval[0] <= check.rate <= check.interval[1]
    assert check.above_asked and check.shifts["slsg"].shifted and check.shifts["decision"].shifted
    text = " ".join(check.warnings("widget", "`slsg threshold RUN DATA`"))
    assert "above the rate asked" in text and "another session" in text and "slsg threshold" in text


@dataclass
class CategoryResultStub:
    images: list
    image: object
