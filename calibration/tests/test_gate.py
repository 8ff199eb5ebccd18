from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import calibration.bundle as cb
from calibration.accuracy import EvalData, Outputs, compare, run_model
from calibration.bundle import quantize_bundle
from calibration.int8 import CPU, TRT, Int8Config, default_exclusions, quantize_flavour


def test_bundle_gets_both_flavours_calibration_and_a_passing_report(tiny_onnx, calib_set, eval_data,
                                                                   tmp_path):
    cfg = Int8Config(method="minmax", progress=False, auroc_budget=0.03)
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path, cfg, eval_data, measure_latency=False)
    assert report.passed, report.failure
    for name in ("model.int8-s8.onnx", "model.int8-u8.onnx", "calibration/tensors.npy",
                 "calibration/manifest.json", "calibration/ranges.json", "calibration/int8_report.json"):
        assert (tmp_path / name).is_file(), name
    acc = report.flavours[CPU].accuracy
    assert acc.map_pearson > 0.9 and acc.n_anomalous == 24
    # the gate's rule: a drop above the budget passes only when its interval says it may be noise
    assert acc.auroc_drop <= 0.03 or (not acc.drop_significant and acc.auroc_drop_low <= 0.0)
    assert json.loads((tmp_path / "calibration" / "int8_report.json").read_text())["passed"] is True


def test_gate_fails_a_broken_quantisation(pre_model, ranges, tiny_onnx, eval_data, tmp_path):
    cfg = Int8Config(method="minmax", progress=False)
    q = quantize_flavour(pre_model, ranges["minmax"], tmp_path / "q.onnx", CPU, cfg,
                         default_exclusions(pre_model, cfg).all())
    model = onnx.load(str(q))
    act_scales = {n.input[1] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    for init in model.graph.initializer:
        if init.name in act_scales:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(40.0), init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    ref = run_model(tiny_onnx, eval_data.images())
    good = compare(ref, run_model(q, eval_data.images()), eval_data, 0.03, 0.9)
    bad = compare(ref, run_model(broken, eval_data.images()), eval_data, 0.03, 0.9)
    assert good.passed
    assert not bad.passed and bad.reasons and bad.map_pearson < good.map_pearson


def test_fallback_keeps_sensitive_layers_float_until_within_budget(tiny_onnx, calib_set, eval_data, tmp_path):
    cfg = Int8Config(method="minmax", progress=False, auroc_budget=0.0, min_map_correlation=0.99,
                     max_fallback_rounds=2)
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path, cfg, eval_data, measure_latency=False)
    assert report.fallback_rounds >= 1 and report.fallback_nodes
    assert all(n not in report.float_regions["graph_block"] for n in report.fallback_nodes)
    assert not report.passed, "a map correlation of 0.99 is out of INT8's reach here: the gate must refuse"
    if not report.passed:  # an impossible budget: the models are withdrawn and the report says why
        assert not (tmp_path / "model.int8-s8.onnx").exists() and report.failure
    else:
        assert (tmp_path / "model.int8-s8.onnx").is_file()


def _scrambling(monkeypatch, file_name: str, kernels_only: bool = False) -> None:
    """Scramble the outputs of one model file (its maps and scores no longer belong to their images); with
    `kernels_only`, only where ONNX Runtime runs it through its integer kernels, as a CPU whose kernels saturate does
    (run as written, the file's own arithmetic, it stays right)."""

    real = cb.run_model

    def run(model, images, *args, **kwargs):
        out = real(model, images, *args, **kwargs)
        if Path(str(model)).name != file_name or (kernels_only and kwargs.get("as_written")):
            return out
        order = np.random.default_rng(0).permutation(len(out))
        return Outputs(out.maps[order][:, ::-1], out.score[order], {k: v[order] for k, v in out.heads.items()})

    monkeypatch.setattr(cb, "run_model", run)


def test_each_flavour_is_gated_apart_and_a_passing_one_ships_alone(tiny_onnx, calib_set, eval_data, tmp_path,
                                                                   monkeypatch):
    _scrambling(monkeypatch, "model.int8-u8.onnx")
    cfg = Int8Config(method="minmax", progress=False, auroc_budget=0.03, max_fallback_rounds=2)
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path, cfg, eval_data, measure_latency=False)
    assert report.passed and report.kept == [TRT]
    assert (tmp_path / "model.int8-s8.onnx").is_file() and not (tmp_path / "model.int8-u8.onnx").exists()
    assert report.flavours[TRT].fallback_nodes == []  # passed at once: frozen, not re-quantised by the fallback
    assert report.fallback_rounds == 2 and report.flavours[CPU].fallback_nodes == report.fallback_nodes
    assert not report.flavours[CPU].kept
    assert report.failure and all(r.startswith(f"{CPU}: ") for r in report.failure)


def test_a_file_that_fails_only_through_this_cpus_int8_kernels_is_refused_without_a_fallback(
        tiny_onnx, calib_set, eval_data, tmp_path, monkeypatch):
    _scrambling(monkeypatch, "model.int8-u8.onnx", kernels_only=True)
    cfg = Int8Config(method="minmax", progress=False, auroc_budget=0.03, max_fallback_rounds=2)
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path, cfg, eval_data, measure_latency=False)
    assert report.kept == [TRT] and not (tmp_path / "model.int8-u8.onnx").exists()
    assert report.fallback_rounds == 0 and report.fallback_nodes == []  # no layer in float repairs a kernel
    saturated = report.flavours[CPU].saturated
    assert saturated.map_pearson_as_written >= 0.9 > saturated.map_pearson_kernels
    assert any("saturate" in r for r in report.failure if r.startswith(f"{CPU}: "))
    assert report.flavours[TRT].saturated is None


def test_no_gate_without_eval_data(tiny_onnx, calib_set, tmp_path: Path):
    report = quantize_bundle(tiny_onnx, calib_set, tmp_path, Int8Config(method="percentile", progress=False))
    assert report.passed and report.flavours[CPU].accuracy is None and report.fp32.latency_ms > 0


def _outputs(scores: np.ndarray, heads: dict | None = None):
    maps = np.tile(scores[:, None, None], (1, 4, 4)).astype(np.float32)
    return Outputs(maps, scores.astype(np.float32), heads or {})


def _data(n_good: int, n_bad: int):
    img = np.zeros((1, 4, 4, 3), np.uint8)
    return EvalData(np.repeat(img, n_good, 0), np.repeat(img, n_bad, 0), threshold=0.5,
                    anomalies_source="synthetic: test")


def test_gate_accepts_a_drop_above_budget_that_is_within_the_noise():
    """Few images: one swapped pair costs ~4 AUROC points, but the paired bootstrap interval holds zero."""
    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.uniform(0.0, 0.6, 5), rng.uniform(0.4, 1.0, 5)])
    test = ref.copy()
    test[np.argmax(ref[:5])] += 0.3  # the highest good image now outranks more anomalies
    rep = compare(_outputs(ref), _outputs(test), _data(5, 5), auroc_budget=0.01, min_map_correlation=0.5)
    assert rep.auroc_drop > 0.01 and not rep.drop_significant
    assert rep.auroc_drop_low <= 0 <= rep.auroc_drop_high
    assert rep.passed, rep.reasons
    assert rep.anomalies_source == "synthetic: test"


def test_gate_refuses_a_drop_that_is_significant_and_above_budget():
    rng = np.random.default_rng(1)
    ref = np.concatenate([rng.normal(0.3, 0.05, 200), rng.normal(0.6, 0.05, 200)])
    test = ref + rng.normal(0, 0.12, ref.size)  # the candidate blurs the separation everywhere
    rep = compare(_outputs(ref), _outputs(test), _data(200, 200), auroc_budget=0.01, min_map_correlation=0.0)
    assert rep.drop_significant and rep.auroc_drop_low > 0.01
    assert not rep.passed and "significant and above the budget" in rep.reasons[0]
    assert "interval" in rep.drop_text()


def test_gate_refuses_nothing_for_a_significant_drop_within_budget():
    rng = np.random.default_rng(2)
    ref = np.concatenate([rng.normal(0.3, 0.05, 300), rng.normal(0.45, 0.05, 300)])
    test = ref + rng.normal(0, 0.01, ref.size)
    rep = compare(_outputs(ref), _outputs(test), _data(300, 300), auroc_budget=0.05, min_map_correlation=0.0)
    assert rep.auroc_drop < 0.05 and rep.passed


def test_gate_reports_every_head_score():
    rng = np.random.default_rng(3)
    s = np.concatenate([rng.uniform(0, 0.5, 20), rng.uniform(0.5, 1, 20)])
    heads = {"slsg": s, "global": s[::-1].copy()}
    rep = compare(_outputs(s, heads), _outputs(s, heads), _data(20, 20), 0.01, 0.5)
    assert set(rep.heads) == {"score_slsg", "score_global"}
    assert rep.heads["score_slsg"]["drop"] == 0 and rep.heads["score_global"]["spearman"] == 1.0
