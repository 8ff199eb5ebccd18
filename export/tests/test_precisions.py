"""`slsg export --int8 --fp16`: calibrates on training images, gates on held-out ones, gives every model its own
threshold, never loses the FP32 bundle over a refused precision, and says so in its exit status."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from rich.console import Console
from typer.testing import CliRunner

import calibration.bundle as cb
import calibration.int8 as ci
import export.head_refit as head_refit
from edge_runtime.backends import BackendError, select_backend
from edge_runtime.backends.base import MAP_OUTPUT, Outputs
from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN
from edge_runtime.backends.openvino_backend import cpu_has_bf16, openvino_available
from edge_runtime.backends.refitted_head import HEADS_DIR, head_file, save_head
from edge_runtime.bundle import load_bundle
from edge_runtime.heads.graph import find_head, onnxruntime_describer, openvino_describer
from export.gates import drop_heads_without_model
from export.job import BundleOptions
from export.pipeline import write_bundle
from export.precisions import precision_table
from export.run_data import load_samples, open_run_data, threshold_data
from export.thresholds import model_thresholds
from slsg.checkpoint import open_run
from slsg.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def full_bundle(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "model.slsg"
    result = write_bundle(trained_run, out, BundleOptions(int8=True, fp16=True, calib_size=8, parity_count=4))
    return out, result


def test_int8_and_fp16_land_in_a_verified_bundle(full_bundle):
    out, result = full_bundle
    assert not result.left_out, {k: v.reasons for k, v in result.left_out.items()}
    bundle = load_bundle(out)
    assert set(bundle.models) == {"fp32", "int8-s8", "int8-u8", "fp16"}
    calib = bundle.manifest.calibration
    assert calib["n"] == 8 and (out / calib["tensors"]).is_file()
    assert all("/train/" in image["path"] for image in calib["images"])  # never validation or test images
    gate = bundle.manifest.export["gate"]
    assert gate["anomalies"].startswith("test anomalies") and gate["n_good"] == 12
    acc = result.precisions.int8["flavours"]["int8-s8"]["accuracy"]
    assert acc["auroc_drop_low"] <= acc["auroc_drop"] <= acc["auroc_drop_high"]  # the drop and its noise
    refits = bundle.manifest.int8_report["adjusted"]  # each INT8 file's global head on its own descriptors
    assert set(refits) == {"int8-s8", "int8-u8"}
    assert all(r["refitted"] and r["n_images"] == 16 and r["norm"]["n_good"] == 16 + 12 for r in refits.values())
    assert "score_local" in bundle.manifest.outputs  # the default detector: its local memory too, from own patches
    assert all(r["local"]["memory"] >= 1 and r["local"]["norm"]["n_good"] == 12 for r in refits.values())
    assert all(r["slsg_norm"]["n_good"] == 12 for r in refits.values())  # SLSG's place in the fusion, from its own

    maps = select_backend(bundle, "onnx-int8").run(np.zeros((1, 64, 64, 3), np.uint8)).maps
    assert maps.shape == (1, 64, 64) and np.isfinite(maps).all()


def test_each_files_training_images_go_through_its_trunk_alone_with_the_whole_graphs_values(full_bundle,
                                                                                            trained_run):
    """The refit skips SLSG's decoder for the training images only where that changes no value: each INT8 file, run
    as the line runs it (ONNX Runtime, the symmetric file as written; OpenVINO), gives the whole graph's descriptors
    and patches exactly."""
    out, _ = full_bundle
    bundle = load_bundle(out)
    data = open_run_data(open_run(trained_run).config)
    images = load_samples(data.validation, (64, 64))[:3]
    for key, library in [(k, lib) for k in ("int8-s8", "int8-u8") for lib in ("ONNX Runtime", "OpenVINO")]:
        if library == "OpenVINO" and not openvino_available():
            continue
        model = onnx.load(str(bundle.models[key]))
        head = find_head(model)
        describe = (onnxruntime_describer(model, head, key in AS_WRITTEN) if library == "ONNX Runtime"
                    else openvino_describer(model, head))
        training = describe.for_training(images)
        assert training.library == library and training.part == "trunk"
        whole, trunk = describe.run(images[:1]), training.run(images[:1])
        assert set(trunk) == {head.descriptor, head.local_patches}
        for name, value in trunk.items():
            np.testing.assert_array_equal(value, whole[name])
    assert {r["training_images_through"] for r in bundle.manifest.int8_report["adjusted"].values()} == {"trunk"}
    if openvino_available():
        refits = [r["head_refit"] for r in bundle.manifest.openvino_int8.values()]
        assert refits and {r["training_images_through"] for r in refits} == {"trunk"}


def test_int8_files_are_gated_again_as_openvino_runs_them(full_bundle):
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")
    out, _ = full_bundle
    bundle = load_bundle(out)
    ov = bundle.manifest.openvino_int8
    assert set(ov) == {"int8-s8", "int8-u8"} and all("map_pearson" in r and "passed" in r for r in ov.values())
    for flavour, r in ov.items():  # a passed flavour has its own threshold from OpenVINO's scores; a failed one none
        assert (f"openvino:{flavour}" in bundle.manifest.thresholds) == r["passed"]
        assert r["head_refit"]["refitted"] and r["head_refit"]["library"] == "OpenVINO"
        head = bundle.head_for(f"openvino:{flavour}")  # its head fitted on OpenVINO's descriptors, hashed, if it passed
        assert (head is not None and head.relative_to(out).as_posix() in bundle.manifest.files) == r["passed"]
        assert (out / f"heads/openvino.{flavour}.npz").is_file() == r["passed"]  # a refused one's is deleted
    passed = [f for f, r in ov.items() if r["passed"]]
    if passed:
        be = select_backend(bundle, "openvino-int8")
        assert be.head == bundle.head_for(be.model) and "head refitted" in be.providers[0]


def test_the_precision_table_shows_each_int8_file_as_openvino_ran_it(full_bundle):
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")


    _, result = full_bundle
    console = Console(record=True, width=240)
    console.print(precision_table(result.precisions))
    lines = console.export_text().splitlines()
    for flavour, r in result.precisions.openvino_int8.items():
        label = f"{flavour} (OpenVINO)" if r["passed"] else f"{flavour} (OpenVINO, left out)"
        row = next(line for line in lines if f" {label} " in line)
        held = result.precisions.held_out.get(f"openvino:{flavour}")
        assert (held is not None and f"({held['false_rejects']}/{held['n']})" in row) == r["passed"]


def test_a_head_whose_model_file_was_removed_after_its_openvino_gate_leaves_the_bundle(tmp_path):
    """The TensorRT lint runs after the OpenVINO gate: a symmetric file it removes must not leave its head behind."""

    keys = ("openvino:int8-s8", "openvino:int8-u8")
    for key in keys:
        save_head(tmp_path / head_file(key), {"x": np.zeros(2, np.float32)})
    heads = {k: head_file(k) for k in keys}
    drop_heads_without_model(tmp_path, heads, {"openvino:int8-u8"})
    assert heads == {"openvino:int8-u8": head_file("openvino:int8-u8")}
    assert not (tmp_path / head_file("openvino:int8-s8")).exists()
    drop_heads_without_model(tmp_path, heads, set())
    assert not heads and not (tmp_path / HEADS_DIR).exists()


def test_tensorrt_int8_has_no_int32_dequantize_and_every_model_is_linted(full_bundle):
    out, _ = full_bundle
    model = onnx.load(str(out / "model.int8-s8.onnx"))
    inits = {i.name: i.data_type for i in model.graph.initializer}
    dq_types = [inits.get(n.input[0]) for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dq_types and onnx.TensorProto.INT32 not in dq_types
    lint = load_bundle(out).manifest.export["tensorrt_lint"]
    assert set(lint) == {"model.onnx", "model.int8-s8.onnx", "model.int8-u8.onnx", "model.fp16.onnx"}
    assert all(lint[f]["ok"] for f in ("model.onnx", "model.int8-s8.onnx", "model.fp16.onnx"))
    cpu = lint["model.int8-u8.onnx"]  # ONNX Runtime's uint8 flavour: recorded, not for TensorRT
    assert not cpu["for_tensorrt"] and not cpu["ok"]
    assert any("UINT8" in i for i in cpu["versions"]["8.5"]["issues"])


def test_thresholds_from_the_gates_scores_equal_a_fresh_run_of_each_file(full_bundle, trained_run):
    """The thresholds reuse the scores each gate computed on the validation images; they must be the files' own,
    as a fresh run of each finished file gives them (no file changed after its gate). A refitted file's gate scores
    come from its refit's pass by float64 twins of the graph's float32 heads (`export.head_refit`); normalising a raw
    head score of about 50 to a z of about 1 turns the graph's float32 rounding into about 1e-5 of a threshold. A file
    changed after its gate moves its threshold by far more than the 1e-4 allowed."""
    out, _ = full_bundle
    bundle = load_bundle(out)
    run = open_run(trained_run)
    data = threshold_data(run.config, open_run_data(run.config))
    images = load_samples(data.validation, bundle.size)
    models = {k: p.name for k, p in bundle.models.items()}
    models |= {f"openvino:{f}": models[f] for f, r in bundle.manifest.openvino_int8.items() if r["passed"]}
    fresh = model_thresholds(out, models, images, run.threshold, "fresh", bundle.manifest.heads)
    assert set(fresh) == set(bundle.manifest.thresholds)
    for key, recorded in bundle.manifest.thresholds.items():
        assert recorded["value"] == pytest.approx(fresh[key]["value"], rel=1e-4), key


def test_each_model_has_its_own_threshold_and_the_runtime_picks_it(full_bundle, trained_run):
    out, result = full_bundle
    bundle = load_bundle(out)
    thresholds = bundle.manifest.thresholds
    as_openvino = {f"openvino:{f}" for f, r in bundle.manifest.openvino_int8.items() if r["passed"]}
    assert set(thresholds) == set(bundle.models) | as_openvino  # INT8 as OpenVINO runs it: a threshold of its own
    assert bundle.manifest.threshold == thresholds["fp32"]
    assert all("validation good images" in t["source"] for t in thresholds.values())
    run_threshold = json.loads((trained_run / "config.json").read_text())["threshold"]
    # FP32 keeps the RUN's threshold (set on more good images than the 12 the models are scored on) ...
    assert thresholds["fp32"]["value"] == pytest.approx(run_threshold["value"], rel=1e-3, abs=1e-4)
    assert thresholds["fp32"]["n_good"] == run_threshold["n_good"]
    for precision in ("int8-s8", "int8-u8"):  # ... and each INT8 model's moves with its own scores on those 12
        how = thresholds[precision]["transfer"]
        assert how["method"] == "transferred" and how["n"] == 12
        expected = how["offset"] + how["slope"] * thresholds["fp32"]["value"]
        assert thresholds[precision]["value"] == pytest.approx(expected, rel=1e-6)
    values = {k: t["value"] for k, t in thresholds.items()}
    assert values["int8-u8"] != values["fp32"] and values["int8-s8"] != values["fp32"]  # their scores differ
    backend = select_backend(bundle, "onnx-int8")
    assert backend.model == "int8-u8"
    assert bundle.threshold_for(backend.model).value == values["int8-u8"]
    assert set(result.precisions.held_out) == set(bundle.models) | as_openvino  # measured on test/good, never to set
    shift = bundle.manifest.export["held_out_shift"]  # and whether test/good looks like the validation images
    assert 0.0 <= shift["low"] <= shift["auroc"] <= shift["high"] <= 1.0 and shift["n_held_out"] > 0


def _refuse_every_gate(monkeypatch):
    real = cb.compare

    def refusing(*args, **kwargs):
        rep = real(*args, **kwargs)
        rep.reasons.append("refused by the test")
        rep.passed = False
        return rep

    monkeypatch.setattr(cb, "compare", refusing)


def _options_in_help() -> set[str]:
    res = runner.invoke(app, ["export", "--help"], terminal_width=200)
    return set(re.findall(r"--[a-z0-9-]+", res.output))


def test_a_refused_int8_still_writes_the_fp32_bundle_and_exits_3(trained_run, tmp_path, monkeypatch):
    _refuse_every_gate(monkeypatch)
    out = tmp_path / "m.slsg"
    res = runner.invoke(app, ["export", str(trained_run), "-o", str(out), "--int8", "--calib-size", "4",
                              "--int8-fallback", "1"], terminal_width=200)
    assert res.exit_code == 3, res.output
    bundle = load_bundle(out)
    assert set(bundle.models) == {"fp32"} and not (out / "calibration").exists()
    left = bundle.manifest.export["left_out"]["int8-s8"]
    assert any("refused by the test" in r for r in left["reasons"])
    assert "left out int8" in res.output and "try:" in res.output
    suggested = {w for step in left["next"] for w in re.findall(r"--[a-z0-9-]+", step)}
    assert {"--int8-fallback", "--calib-method"} <= suggested
    assert suggested <= _options_in_help()  # every suggestion is a real option


def test_each_int8_file_is_gated_apart_and_the_one_that_passes_ships(trained_run, tmp_path, monkeypatch):
    real = cb._gate

    def refusing_cpu(fp32_out, models, data, cfg, scores, known):
        reports = real(fp32_out, models, data, cfg, scores, known)
        if "int8-u8" in reports:
            reports["int8-u8"].reasons.append("refused by the test")
            reports["int8-u8"].passed = False
        return reports

    monkeypatch.setattr(cb, "_gate", refusing_cpu)
    out = tmp_path / "m.slsg"
    res = runner.invoke(app, ["export", str(trained_run), "-o", str(out), "--int8", "--calib-size", "4",
                              "--int8-fallback", "1"], terminal_width=200)
    assert res.exit_code == 3, res.output  # a file asked for is missing
    bundle = load_bundle(out)
    assert set(bundle.models) == {"fp32", "int8-s8"} and (out / "calibration").is_dir()
    left = bundle.manifest.export["left_out"]
    assert set(left) == {"int8-u8"} and any("refused by the test" in r for r in left["int8-u8"]["reasons"])
    assert "left out int8-u8" in res.output

    backend = select_backend(bundle, "onnx-int8")  # ONNX Runtime falls back to the gated symmetric file
    assert backend.model == "int8-s8" and "int8-s8" in bundle.manifest.thresholds
    assert "int8-u8" not in bundle.manifest.thresholds


def test_a_tensorrt_model_the_parser_would_refuse_is_left_out(trained_run, tmp_path, monkeypatch):
    """With ORT's default (quantised INT32 biases) the lint refuses model.int8-s8.onnx; int8-u8 stays."""

    monkeypatch.setattr(ci, "tensorrt_extra_options",
                        lambda: {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": True})
    out = tmp_path / "m.slsg"
    result = write_bundle(trained_run, out, BundleOptions(int8=True, calib_size=4, parity_count=2))
    bundle = load_bundle(out)
    assert "int8-s8" not in bundle.models and "int8-u8" in bundle.models
    assert not (out / "model.int8-s8.onnx").exists()
    reasons = " ".join(result.left_out["int8-s8"].reasons)
    assert "INT32" in reasons and "parser would refuse" in reasons
    assert not bundle.manifest.export["tensorrt_lint"]["model.int8-s8.onnx"]["ok"]


def test_int8_without_reachable_training_images_is_left_out_not_fatal(effnet_run, tmp_path):
    out = tmp_path / "m.slsg"
    res = runner.invoke(app, ["export", str(effnet_run), "-o", str(out), "--int8", "--no-simplify"])
    assert res.exit_code == 3, res.output
    left = json.loads((out / "manifest.json").read_text())["export"]["left_out"]["int8"]
    assert "not reachable" in left["reasons"][0]
    assert set(load_bundle(out).models) == {"fp32"}


def test_bf16_gets_a_model_entry_only_through_its_gate(trained_run, tmp_path):
    """bf16 is model.onnx in OpenVINO bf16: listed under `models` (with its own threshold) only when its gate
    passed on this CPU; where the CPU has no bf16 it is left out with that reason and the runtime refuses it."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")

    out = tmp_path / "bf16.slsg"
    result = write_bundle(trained_run, out, BundleOptions(bf16=True, parity_count=4))
    bundle = load_bundle(out)
    assert bundle.manifest.bf16_report is not None
    if cpu_has_bf16():
        assert bundle.models["bf16"] == out / "model.onnx" and "bf16" in bundle.manifest.thresholds
        backend = select_backend(bundle, "openvino-bf16")
        assert backend.model == "bf16"
        assert bundle.manifest.bf16_report["head_refit"]["refitted"]  # the RUN has a global head
        assert bundle.head_for("bf16") == out / "heads" / "bf16.npz" and backend.head == bundle.head_for("bf16")
        return
    assert "bf16" not in bundle.models and "no bf16" in " ".join(result.left_out["bf16"].reasons)
    with pytest.raises(BackendError, match="gate refused it.*no bf16"):
        select_backend(bundle, "openvino-bf16")


def test_bf16_without_a_head_to_refit_is_gated_on_the_pass_its_map_rule_read(trained_run, tmp_path, monkeypatch):
    """No head to refit (an SLSG-only RUN): the one bf16 pass over the gate's images meets the map rule and is the
    gate's."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 arithmetic (OpenVINO would run f32 under the name)")
    import export.gates as gates

    built, real = [], gates.bf16_backend
    monkeypatch.setattr(gates, "bf16_backend", lambda model, head=None: built.append(head) or real(model, head=head))
    monkeypatch.setattr(gates.HeadRefit, "for_run", classmethod(lambda cls, *args: None))  # as for SLSG alone
    write_bundle(trained_run, tmp_path / "m.slsg", BundleOptions(bf16=True, parity_count=2))
    report = load_bundle(tmp_path / "m.slsg").manifest.bf16_report
    assert built == [None] and "head_refit" not in report and "map_pearson" in str(report)


def _openvino_maps_elsewhere(monkeypatch) -> None:
    """OpenVINO giving other anomaly maps than the file's arithmetic and FP32's (a CPU whose integer kernels
    saturate, or weights re-stored with too little precision, or bf16's rounding), patched into `export.gates`."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")
    import export.gates as gates

    class OtherMaps(gates.OpenVinoBackend):
        def run(self, batch):
            out = super().run(batch)
            return Outputs(out.maps[:, ::-1, ::-1] ** 3, out.score, out.heads, out.head_maps)

    monkeypatch.setattr(gates, "OpenVinoBackend", OtherMaps)
    monkeypatch.setattr(gates, "bf16_backend", lambda model, head=None: OtherMaps(
        model, precision="bf16", name="openvino-bf16", model="bf16", head=head))
    real_describer = head_refit.openvino_describer

    def other_maps(model, head, precision="int8"):  # the pass a refit starts from, where the gate reads the maps
        describer = real_describer(model, head, precision)
        run = describer.run

        def moved(batch):
            got = run(batch)
            got[MAP_OUTPUT] = np.ascontiguousarray(got[MAP_OUTPUT][..., ::-1, ::-1] ** 3)
            return got

        return dataclasses.replace(describer, run=moved)

    monkeypatch.setattr(head_refit, "openvino_describer", other_maps)


def _openvino_records(run, out: Path) -> dict:
    """The OpenVINO gate's records of an INT8 export of `run`, each checked to be a refusal before any refit."""
    write_bundle(run, out, BundleOptions(int8=True, calib_size=8, parity_count=4))
    bundle = load_bundle(out)
    records = bundle.manifest.openvino_int8
    assert records, "the INT8 files reached the OpenVINO gate"
    for flavour, record in records.items():
        assert not record["passed"] and "head_refit" not in record  # refused before the refit
        assert not (out / f"heads/openvino.{flavour}.npz").exists()
    assert {"int8-s8", "int8-u8"} <= set(bundle.models)  # OpenVINO's refusal leaves ONNX Runtime's files as gated
    return records


def test_an_int8_file_openvino_does_not_compute_as_written_here_is_refused_before_its_refit(trained_run, tmp_path,
                                                                                          monkeypatch):
    _openvino_maps_elsewhere(monkeypatch)
    for record in _openvino_records(trained_run, tmp_path / "model.slsg").values():
        assert "INT8 arithmetic" in record["reasons"][0]


def test_an_int8_file_whose_maps_fail_the_gate_as_openvino_runs_it_is_refused_before_its_refit(trained_run, tmp_path,
                                                                                              monkeypatch):
    import export.gates as gates

    _openvino_maps_elsewhere(monkeypatch)
    monkeypatch.setattr(gates, "unfaithful", lambda backend, frames: None)  # this CPU computes the file as written
    for record in _openvino_records(trained_run, tmp_path / "model.slsg").values():
        assert record["map_pearson"] < 0.9 and record["reasons"][0].startswith("anomaly-map correlation")


def test_bf16_whose_maps_fail_the_gate_is_refused_before_its_refit(trained_run, tmp_path, monkeypatch):
    """bf16's map is SLSG's, which no refitted head changes: a bf16 run whose maps do not follow FP32's is refused on
    one pass over the gate's images, with the gate's reason, and no head is fitted for it."""
    _openvino_maps_elsewhere(monkeypatch)
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 arithmetic: bf16 is refused for that before any pass")
    out = tmp_path / "bf16.slsg"
    result = write_bundle(trained_run, out, BundleOptions(bf16=True, parity_count=4))
    record = load_bundle(out).manifest.bf16_report
    assert "head_refit" not in record and not (out / head_file("bf16")).exists()
    assert record["accuracy"]["map_pearson"] < 0.99
    assert result.left_out["bf16"].reasons[0].startswith("anomaly-map correlation")
    assert "bf16" not in load_bundle(out).models
