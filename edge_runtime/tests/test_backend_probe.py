"""`--backend auto` on a CPU picks by measurement on this device, caches the pick in the bundle, and says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.backends import BackendError, select_backend
from edge_runtime.backends import probe as probe_mod
from edge_runtime.backends import select as select_mod
from edge_runtime.backends.base import Outputs
from edge_runtime.backends.faithful import check_frames
from edge_runtime.backends.openvino_backend import openvino_available
from edge_runtime.backends.probe import ProbeConfig
from edge_runtime.bundle import load_bundle
from edge_runtime.manifest import Manifest, write_manifest
from edge_runtime.tests.conftest import make_bundle

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed here "
                                    "(pip install 'slsg[openvino]')")


def _with_manifest(root: Path, **extra) -> Path:
    manifest = json.loads((root / "manifest.json").read_text())
    write_manifest(root, Manifest.new({**manifest, **extra}))
    return root


def _ov_gate(passed: bool, reason: str = "anomaly-map correlation 0.7512 < 0.9000") -> dict:
    return {"passed": passed, "reasons": [] if passed else [reason]}


@pytest.fixture
def int8_bundle(tmp_path: Path):
    root = make_bundle(tmp_path / "b.slsg", {"int8-u8": "model.int8-u8.onnx"})
    return load_bundle(_with_manifest(root, openvino_int8={"int8-u8": _ov_gate(True)}))


def _fake_measure(monkeypatch: pytest.MonkeyPatch, p50: dict[str, float]) -> list:
    calls = []

    def measure(openers, size, cfg):
        calls.append(sorted(openers))
        return {n: p50[n] for n in openers if n in p50}, {n: "not installed" for n in openers if n not in p50}

    monkeypatch.setattr(probe_mod, "measure", measure)
    return calls


def test_auto_picks_the_fastest_measured_backend_and_says_why(int8_bundle, monkeypatch) -> None:
    monkeypatch.setattr(select_mod, "openvino_available", lambda: False)
    calls = _fake_measure(monkeypatch, {"onnx": 40.0, "onnx-int8": 55.0})  # INT8 slower (Lite0 on ORT): not it
    be = select_backend(int8_bundle, "auto", threads=1, probe_cfg=ProbeConfig())
    assert be.name == "onnx:fp32" and calls == [["onnx", "onnx-int8"]]
    sel = be.selection
    assert sel["how"] == "auto" and sel["picked"] == "onnx" and not sel["from_cache"]
    assert "fastest of 2" in sel["why"] and "onnx 40.0 ms" in sel["why"]
    cached = json.loads(Path(sel["cache"]).read_text())
    assert Path(sel["cache"]).parent == int8_bundle.engines_dir / "cpu-probe" and cached["picked"] == "onnx"


def test_the_cached_pick_is_reused_and_refresh_measures_again(int8_bundle, monkeypatch) -> None:
    monkeypatch.setattr(select_mod, "openvino_available", lambda: False)
    calls = _fake_measure(monkeypatch, {"onnx": 40.0, "onnx-int8": 20.0})
    assert select_backend(int8_bundle, "auto", threads=1, probe_cfg=ProbeConfig()).name == "onnx-int8:int8-u8"
    again = select_backend(int8_bundle, "auto", threads=1, probe_cfg=ProbeConfig())
    assert again.selection["from_cache"] and len(calls) == 1
    calls2 = _fake_measure(monkeypatch, {"onnx": 10.0, "onnx-int8": 20.0})
    monkeypatch.setenv(probe_mod.ENV, "refresh")
    assert select_backend(int8_bundle, "auto", threads=1).name == "onnx:fp32" and len(calls2) == 1


def test_a_cached_pick_is_not_trusted_for_other_threads_or_models(int8_bundle, monkeypatch) -> None:
    monkeypatch.setattr(select_mod, "openvino_available", lambda: False)
    calls = _fake_measure(monkeypatch, {"onnx": 40.0, "onnx-int8": 20.0})
    select_backend(int8_bundle, "auto", threads=1, probe_cfg=ProbeConfig())
    select_backend(int8_bundle, "auto", threads=2, probe_cfg=ProbeConfig())
    assert len(calls) == 2
    key = probe_mod.device_key(int8_bundle, 1, ["onnx", "onnx-int8"])
    other = dict(key, models={**key["models"], "int8-u8": "0" * 64})  # a re-exported INT8 file
    assert probe_mod.read_cached(probe_mod.cache_path(int8_bundle, key), other) is None


def test_only_models_the_bundle_ships_are_candidates(bundle_dir: Path, monkeypatch) -> None:
    """A precision whose gate refused it is not in the bundle, so `auto` can never pick it."""
    monkeypatch.setattr(select_mod, "openvino_available", lambda: True)
    calls = _fake_measure(monkeypatch, {"onnx": 40.0, "openvino": 30.0, "openvino-int8": 1.0, "onnx-int8": 1.0})
    monkeypatch.setattr(select_mod, "_open_named", lambda b, name, t: type("B", (), {"name": name})())
    be = select_backend(load_bundle(bundle_dir), "auto", threads=1, probe_cfg=ProbeConfig())
    assert calls == [["onnx", "openvino"]] and be.name == "openvino"


def test_ties_go_to_the_float_portable_backend() -> None:
    order = list(probe_mod.CPU_CANDIDATES)
    assert probe_mod.pick({"onnx": 10.05, "onnx-int8": 10.0}, order) == "onnx"
    assert probe_mod.pick({"onnx": 12.0, "onnx-int8": 10.0}, order) == "onnx-int8"


def test_nothing_that_runs_is_a_clear_error(int8_bundle, monkeypatch) -> None:
    monkeypatch.setattr(select_mod, "openvino_available", lambda: False)
    _fake_measure(monkeypatch, {})
    with pytest.raises(BackendError, match="no CPU backend could run"):
        select_backend(int8_bundle, "auto", threads=1, probe_cfg=ProbeConfig())


@needs_openvino
def test_a_real_probe_times_every_installed_backend(int8_bundle) -> None:
    be = select_backend(int8_bundle, "auto", threads=1, probe_cfg=ProbeConfig(warmup=1, rounds=2))
    sel = be.selection
    assert set(sel["p50_ms"]) == {"onnx", "openvino", "onnx-int8", "openvino-int8"}
    assert sel["picked"] == min(sel["p50_ms"], key=sel["p50_ms"].get) or \
        sel["p50_ms"][sel["picked"]] <= 1.01 * min(sel["p50_ms"].values())
    assert be.name.startswith(sel["picked"] + ":")


def test_an_explicit_backend_says_it_was_asked_for(bundle_dir: Path) -> None:
    be = select_backend(load_bundle(bundle_dir), "onnx", threads=1)
    assert be.selection == {"how": "asked", "picked": "onnx", "why": "--backend onnx"}


@needs_openvino
def test_openvino_int8_runs_only_files_that_passed_their_gate_under_openvino(tmp_path: Path) -> None:
    """ORT's INT8 gate does not vouch for OpenVINO: it lowers Q/DQ its own way (Lite0: map r 0.75 vs 0.95)."""
    extra = {"int8-s8": "model.int8-s8.onnx", "int8-u8": "model.int8-u8.onnx"}
    ungated = load_bundle(make_bundle(tmp_path / "a.slsg", extra))
    with pytest.raises(BackendError, match="gated on ONNX Runtime only"):
        select_backend(ungated, "openvino-int8", threads=1)
    assert "openvino-int8" not in select_mod._cpu_candidates(ungated)
    root = _with_manifest(make_bundle(tmp_path / "b.slsg", extra),
                          openvino_int8={"int8-s8": _ov_gate(False), "int8-u8": _ov_gate(True)},
                          thresholds={"openvino:int8-u8": {"value": 0.42, "false_reject_rate": 0.01, "n_good": 10,
                                                            "quantiles": {}}})
    be = select_backend(load_bundle(root), "openvino-int8", threads=1)
    assert be.name == "openvino-int8:int8-u8" and be.model == "openvino:int8-u8"
    assert load_bundle(root).threshold_for(be.model).value == 0.42  # its own threshold, from its own scores
    refused = _with_manifest(make_bundle(tmp_path / "c.slsg", extra),
                             openvino_int8={"int8-s8": _ov_gate(False), "int8-u8": _ov_gate(False)})
    with pytest.raises(BackendError, match="no INT8 file .* passed its gate under OpenVINO.*0.7512"):
        select_backend(load_bundle(refused), "openvino-int8", threads=1)
    assert "openvino-int8" not in select_mod._cpu_candidates(load_bundle(refused))


@needs_openvino
def test_bf16_without_a_gated_model_is_refused_with_the_gate_reason(tmp_path: Path) -> None:
    root = _with_manifest(make_bundle(tmp_path / "b.slsg"), export={
        "left_out": {"bf16": {"reasons": ["anomaly-map correlation 0.9 < 0.99"], "next": []}}})
    with pytest.raises(BackendError, match="gate refused it.*correlation 0.9"):
        select_backend(load_bundle(root), "openvino-bf16", threads=1)
    with pytest.raises(BackendError, match="--int8"):
        select_backend(load_bundle(root), "openvino-int8", threads=1)


class _SaturatingKernels:
    """A backend as a CPU whose integer kernels saturate runs it: the same file, maps that are not its arithmetic."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def run(self, batch):
        out = self._backend.run(batch)
        return Outputs(out.maps[:, ::-1, ::-1] ** 3, out.score, out.heads, out.head_maps)


def test_auto_leaves_out_an_int8_file_this_cpu_does_not_compute_as_written(int8_bundle, monkeypatch) -> None:
    monkeypatch.setattr(select_mod, "openvino_available", lambda: False)

    def opener(name):
        backend = select_mod._open_named(int8_bundle, name, 1)
        return _SaturatingKernels(backend) if name == "onnx-int8" else backend

    result = probe_mod.probe(int8_bundle, ["onnx", "onnx-int8"], 1, opener, ProbeConfig(warmup=1, rounds=1))
    assert result.picked == "onnx" and set(result.p50_ms) == {"onnx"}
    assert "INT8 arithmetic" in result.skipped["onnx-int8"] and "VNNI" in result.skipped["onnx-int8"]


def test_an_int8_file_computed_as_written_stays_a_candidate(int8_bundle, monkeypatch) -> None:
    monkeypatch.setattr(select_mod, "openvino_available", lambda: False)
    opener = lambda name: select_mod._open_named(int8_bundle, name, 1)  # noqa: E731
    result = probe_mod.probe(int8_bundle, ["onnx", "onnx-int8"], 1, opener, ProbeConfig(warmup=1, rounds=1))
    assert set(result.p50_ms) == {"onnx", "onnx-int8"} and not result.skipped


def test_the_check_runs_the_bundles_own_good_images_and_never_unpickles(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b.slsg", {"int8-u8": "model.int8-u8.onnx"})
    goods = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    np.save(root / "calibration" / "tensors.npy", goods)
    bundle = load_bundle(_with_manifest(root, calibration={"tensors": "calibration/tensors.npy"}))
    np.testing.assert_array_equal(check_frames(bundle), goods[:4])
    np.save(root / "calibration" / "tensors.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    frames = check_frames(load_bundle(_with_manifest(root)))  # a pickled file is not read: textured frames
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == np.uint8
