"""NG evidence is saved off the frame loop: bounded queue with a reason when full, a free-disk floor, and the
first N frames of each NG burst kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from edge_runtime.pipeline import Judgement
from edge_runtime.sinks.evidence import EvidencePolicy, NgSaver
from edge_runtime.sources.items import Frame

GB = 2**30


def _j(i: int, ng: bool) -> Judgement:
    img = np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return Judgement(Frame(i, 1_700_000_000.0 + i, img, "cam", 0.0, 0.0), 0.9 if ng else 0.1, ng, 0.5,
                     np.full((8, 8), 0.9 if ng else 0.1, np.float32), {"total": 1.0}, image=img if ng else None)


def _until(cond, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert cond()


def test_first_n_of_each_burst_are_kept_and_written_in_the_background(tmp_path: Path) -> None:
    reports: list = []
    saver = NgSaver(tmp_path / "ng", EvidencePolicy(burst_keep=2, min_free_mb=0, queue_frames=64), reports.append)
    pattern = [True, True, True, True, False, True, True, True]  # bursts of 4 and 3
    js = [_j(i, ng) for i, ng in enumerate(pattern)]
    for j in js:
        saver.on_frame(j)
    saver.close()
    assert [j.evidence for j in js] == ["queued", "queued", "skipped: burst: the first 2 NG frames of this burst "
                                        "are kept"] * 1 + [js[3].evidence, None, "queued", "queued", js[7].evidence]
    assert js[3].evidence.startswith("skipped: burst") and js[7].evidence.startswith("skipped: burst")
    saved_ids = sorted(r["id"] for r in reports if r["event"] == "evidence" and r["saved"])
    assert saved_ids == [0, 1, 5, 6]
    names = sorted(p.name for p in (tmp_path / "ng").iterdir())
    assert len(names) == 8 and sum(n.endswith("_overlay.jpg") for n in names) == 4  # overlay made by the saver
    assert saver.counts()["skipped"] == {"burst: the first 2 NG frames of this burst are kept": 3}


def test_a_full_queue_skips_with_a_reason_instead_of_waiting(tmp_path: Path) -> None:
    gate = threading.Event()
    calls = [0]

    def slow_disk(path: Path) -> int:
        calls[0] += 1
        if calls[0] > 1:  # the first call is the constructor's; then the saver thread blocks here
            gate.wait(5)
        return 100 * GB

    saver = NgSaver(tmp_path / "ng", EvidencePolicy(burst_keep=0, queue_frames=2), lambda r: None, slow_disk)
    js = [_j(i, True) for i in range(6)]
    saver.on_frame(js[0])
    _until(lambda: calls[0] == 2)  # the saver thread is stuck writing frame 0
    for j in js[1:]:
        saver.on_frame(j)  # returns at once: the frame loop never waits for the disk
    evidence = [j.evidence for j in js]
    gate.set()
    saver.close()
    assert evidence[:3] == ["queued"] * 3  # one being written, two waiting
    assert all(e == "skipped: saver queue full (2 frames waiting)" for e in evidence[3:])


def test_below_the_free_disk_floor_nothing_is_written(tmp_path: Path) -> None:
    free = [10 * GB]
    reports: list = []
    saver = NgSaver(tmp_path / "ng", EvidencePolicy(min_free_mb=1024, burst_keep=0), reports.append,
                    lambda p: free[0])
    first = _j(0, True)
    saver.on_frame(first)
    _until(lambda: any(r["event"] == "evidence" for r in reports))
    free[0] = 100 * 2**20  # the disk fills: the saver sees it at its next write
    second = _j(1, True)
    saver.on_frame(second)
    saver.close()
    third = _j(2, True)
    saver.on_frame(third)  # the loop side now knows too
    assert first.evidence == "queued" and third.evidence.startswith("skipped: disk free below the floor")
    by_id = {r["id"]: r for r in reports if r["event"] == "evidence"}
    assert by_id[0]["saved"] and by_id[1]["saved"] == [] and "below the floor" in by_id[1]["error"]
