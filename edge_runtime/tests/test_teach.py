"""The teach loop without the page: reviews, a refit through its gate, versions, the switch the running line follows,
rollback, and the refusals (a defect the new version would miss, a version whose hashes do not verify)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import MANIFEST_NAME, BundleError
from edge_runtime.pipeline import Judge
from edge_runtime.sources.items import Frame
from edge_runtime.teach.follow import VersionFollower, reopen
from edge_runtime.teach.refit import refit
from edge_runtime.teach.store import DEFECT, GOOD, LineStore, TeachError
from edge_runtime.tensorrt import BuildSettings, build_engine
from edge_runtime.tests.conftest import THRESHOLD, gray, make_bundle
from edge_runtime.tests.support import run_edge_cli
from edge_runtime.tests.trt_bundles import H, W, make_trt_bundle


def _review(store: LineStore, values: dict[str, tuple[int, str]], who: str = "ana") -> None:
    """Frames of a given brightness (the test model's score is brightness / 255), reviewed as labelled."""
    for key, (value, label) in values.items():
        store.review(key, gray(value), {"id": key, "score": value / 255, "verdict": "NG"}, label, who)


@pytest.fixture
def store(tmp_path: Path) -> LineStore:
    return LineStore(make_bundle(tmp_path / "model.slsg"))


def test_a_refit_that_keeps_every_defect_makes_a_new_verified_version_and_leaves_the_original_untouched(store):
    original = (store.original / MANIFEST_NAME).read_bytes()
    _review(store, {"g1": (140, GOOD), "g2": (145, GOOD), "d1": (230, DEFECT)})
    report = refit(store, "ana")
    assert report.accepted, report.reasons
    assert report.version == 2 and store.current == 1  # made, not yet switched: the caller decides
    fp32 = report.models[0]
    assert fp32.old == THRESHOLD and fp32.new >= 145 / 255 - 1e-6
    assert (fp32.goods_flagged_before, fp32.goods_flagged_after) == (2, 0) and fp32.defects_caught_after == 1
    v2 = load_bundle(store.version_path(2))  # every hash verifies
    assert v2.threshold_for("fp32").value == pytest.approx(fp32.new)
    assert v2.manifest.lineage["parent"] == 1 and v2.manifest.lineage["by"] == "ana"
    assert (store.original / MANIFEST_NAME).read_bytes() == original
    actions = [a["action"] for a in store.audit_log()]
    assert actions == ["review", "review", "review", "refit"]


def test_a_refit_that_would_miss_a_confirmed_defect_is_refused_and_changes_nothing(store):
    _review(store, {"g1": (200, GOOD), "d1": (150, DEFECT)})
    report = refit(store, "ana")
    assert not report.accepted and report.version is None
    assert any("would no longer be flagged" in r for r in report.reasons)
    assert [v.number for v in store.versions()] == [1]
    last = store.audit_log()[-1]
    assert last["action"] == "refit_refused" and last["models"][0]["threshold_after"] > 150 / 255


def test_a_refit_needs_a_confirmed_good_and_a_confirmed_defect(store):
    _review(store, {"g1": (140, GOOD)})
    report = refit(store, "ana")
    assert not report.accepted and "confirm at least one defect" in report.reasons[0]


def test_a_second_review_moves_the_frame_to_its_new_label(store):
    _review(store, {"f": (140, GOOD)})
    _review(store, {"f": (140, DEFECT)})
    assert store.labels() == {"f": DEFECT}
    with pytest.raises(TeachError, match="not a plain name"):
        store.review("../x", gray(1), {}, GOOD, "ana")


def test_switch_and_rollback_follow_the_history_and_a_damaged_version_is_refused(store):
    _review(store, {"g1": (140, GOOD), "d1": (230, DEFECT)})
    v2 = refit(store, "ana").version
    store.switch(v2, "ana")
    _review(store, {"g2": (160, GOOD)})
    v3 = refit(store, "ana").version
    store.switch(v3, "ana")
    assert store.rollback("bo").root == store.version_path(v2) and store.current == v2
    assert store.rollback("bo").root == store.original and store.current == 1
    with pytest.raises(TeachError, match="nothing to roll back"):
        store.rollback("bo")
    model = store.version_path(v3) / "model.onnx"
    model.unlink()  # a hard link: replace it, never write into it (that would change the parent too)
    model.write_bytes(b"not the model the manifest hashed")
    with pytest.raises(BundleError, match="model.onnx"):
        store.switch(v3, "ana")
    assert store.current == 1 and load_bundle(store.original)  # the original still verifies


def test_the_running_judge_follows_the_current_version_and_keeps_its_own_when_the_new_one_is_damaged(store):
    bundle = load_bundle(store.original)
    judge = Judge(select_backend(bundle, "onnx"), bundle.threshold.value)
    events: list[dict] = []
    follower = VersionFollower(store, judge, lambda b: select_backend(b, "onnx"), events.append)
    _review(store, {"g1": (140, GOOD), "d1": (230, DEFECT)})
    v2 = refit(store, "ana").version
    store.switch(v2, "ana")
    follower.check()
    assert judge.active.version == v2 and judge.threshold == pytest.approx(140 / 255, abs=1e-6)
    frame_ok = judge.judge(_frame(140))
    assert frame_ok.verdict == "OK" and frame_ok.version == v2
    # a version whose manifest no longer matches its files: switched to by hand, refused by the runtime
    _review(store, {"g2": (160, GOOD)})
    v3 = refit(store, "ana").version
    (store.folder / "current.json").write_text(json.dumps({"version": v3, "before": [1, v2]}))
    (store.version_path(v3) / "calibration" / "images.json").unlink()
    follower.check()
    assert judge.active.version == v2 and events[-1]["event"] == "version_refused"
    assert "missing calibration/images.json" in events[-1]["detail"]


def _frame(value: int):


    now = time.perf_counter()
    return Frame(id=1, image=gray(value), captured=time.time(), ready=now, origin="test", capture_ms=0.0)


def test_refit_and_rollback_commands_run_torch_free(tmp_path):
    bundle = make_bundle(tmp_path / "model.slsg")
    store = LineStore(bundle)
    _review(store, {"g1": (140, GOOD), "d1": (230, DEFECT)})
    out, proc = run_edge_cli(["refit", str(bundle), "--who", "ana"])
    assert out == {"torch": False, "code": 0}, proc.stdout + proc.stderr
    assert LineStore(bundle).current == 2
    out, proc = run_edge_cli(["rollback", str(bundle), "--who", "ana"])
    assert out["code"] == 0 and LineStore(bundle).current == 1, proc.stderr
    _review(store, {"g2": (240, GOOD)})  # now no defect would be caught: refused, exit 3
    out, proc = run_edge_cli(["refit", str(bundle), "--who", "ana"])
    assert out["code"] == 3 and "refused" in proc.stdout + proc.stderr


def test_a_line_on_tensorrt_builds_the_new_versions_engine_and_stays_on_tensorrt(tmp_path, fake_trt):
    """A refit on a Jetson: the new version has no engine yet; the follower builds it while the line keeps judging,
    and the line stays on TensorRT (never a silent fall-back to the CPU)."""



    fake_trt("10.3")
    bundle = make_trt_bundle(tmp_path / "model.slsg")
    build_engine(bundle, BuildSettings(precision="fp16"), console=Console(file=io.StringIO()))
    running = select_backend(bundle, "trt-fp16")
    judge = Judge(running, bundle.threshold.value)
    store = LineStore(bundle.root)
    store.review("g", gray(140, H, W), {}, GOOD, "ana")
    store.review("d", gray(230, H, W), {}, DEFECT, "ana")
    report = refit(store, "ana")
    assert report.accepted, report.reasons
    store.switch(report.version, "ana")
    events: list[dict] = []
    VersionFollower(store, judge, lambda b: reopen(b, running, "auto"), events.append).check()
    assert judge.active.version == report.version and judge.backend.name == "tensorrt-fp16", events
    assert list((store.version_path(report.version) / "engines").glob("*.engine"))
