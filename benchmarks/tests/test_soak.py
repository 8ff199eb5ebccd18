"""The soak harness itself keeps working: a short run with every fault injected passes its own checks."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import soak


def test_a_short_soak_with_every_fault_passes_its_checks(tmp_path: Path) -> None:
    r = soak(frames=700, fps=400.0, drop_every=600, nan_every=500, sink_fail=0.05, disk_full_at=0.8,
             disk_full_s=0.4, work=tmp_path, modbus=True, mqtt=False)
    failed = [name for name, ok in r["checks"].items() if not ok]
    assert not failed, (failed, r)
    assert r["camera_drops"] == 1 and r["invalid"] >= 1 and r["false_ok"] == 0 and r["log_lost"] > 0
