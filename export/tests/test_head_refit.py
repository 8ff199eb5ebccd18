"""Refitting an exported model file's global head on its own descriptors: it finds the head in a real graph,
reproduces the RUN's scores on the FP32 file, and undoes a systematic move of the descriptors (what INT8 does to
the pooled trunk maps) that the RUN's Gaussian cannot absorb."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from calibration.accuracy import run_model
from edge_runtime.backends.base import Outputs
from edge_runtime.backends.openvino_backend import (
    ImagePass,
    OpenVinoBackend,
    compile_config,
    compile_cpu,
    cpu_has_bf16,
)
from edge_runtime.heads.graph import descriptors
from edge_runtime.manifest import sha256_file
from export import head_refit
from export.gates import GLANCE_MARGIN, _refused_at_a_glance
from export.head_refit import (
    CHECK_TOLERANCE,
    GLANCE,
    HEAD_TENSORS,
    Probe,
    checked,
    find_head,
    openvino_probe,
    refit_head,
    refit_head_for_openvino,
)
from export.job import BundleOptions
from export.pipeline import write_bundle
from export.run_data import load_samples, open_run_data
from slsg.checkpoint import load_run


@pytest.fixture(scope="module")
def fp32_model(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("refit") / "model.slsg"
    write_bundle(trained_run, out, BundleOptions(parity_count=2))
    return out / "model.onnx"


@pytest.fixture(scope="module")
def images(trained_run):
    run, _ = load_run(trained_run)
    data = open_run_data(run.config)
    size = run.model_config.hw
    return load_samples(data.train, size), load_samples(data.validation, size)


def _copy(model, tmp_path):
    path = tmp_path / "model.onnx"
    shutil.copy(model, path)
    return path


def test_the_head_and_its_place_in_the_fusion_are_found_in_an_exported_graph(fp32_model, effnet_bundle):
    head = find_head(onnx.load(str(fp32_model)))
    assert head is not None and head.location is not None and head.index == 1  # heads ("slsg", "global")
    assert find_head(onnx.load(str(effnet_bundle / "model.onnx"))) is None       # an SLSG-only RUN


def test_refitting_the_fp32_file_on_the_runs_images_reproduces_its_scores(fp32_model, images, tmp_path):
    train, val = images
    path = _copy(fp32_model, tmp_path)
    before = run_model(path, val)
    record = refit_head(path, train, val).record
    after = run_model(path, val)
    assert record["refitted"] and record["n_images"] == len(train)
    np.testing.assert_allclose(after.heads["global"], before.heads["global"], rtol=2e-3)
    np.testing.assert_allclose(after.score, before.score, rtol=5e-3, atol=5e-3)


def _move_descriptors(path, scale: float, shift: float) -> None:
    """Insert descriptor · scale·(1 + index mod 3) + shift before the head: a systematic, per-dimension move."""
    model = onnx.load(str(path))
    head = find_head(model)
    dims = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == HEAD_TENSORS["mean"])).size
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(scale * (1 + np.arange(dims) % 3).astype(np.float32), "move_scale"),
                          numpy_helper.from_array(np.full(dims, shift, np.float32), "move_shift")])
    sub = next(n for n in g.node if n.op_type == "Sub" and HEAD_TENSORS["mean"] in n.input)
    sub.input[list(sub.input).index(head.descriptor)] = "moved"
    at = list(g.node).index(sub)
    g.node.insert(at, helper.make_node("Add", ["scaled", "move_shift"], ["moved"]))
    g.node.insert(at, helper.make_node("Mul", [head.descriptor, "move_scale"], ["scaled"]))
    onnx.save(model, str(path))


def test_refitting_undoes_a_systematic_move_of_the_descriptors(fp32_model, images, tmp_path):
    train, val = images
    reference = run_model(fp32_model, val).heads["global"]
    path = _copy(fp32_model, tmp_path)
    _move_descriptors(path, scale=1.3, shift=0.1)
    moved = run_model(path, val).heads["global"]
    assert np.median(moved) > 2 * np.median(reference)     # the RUN's Gaussian no longer fits this model
    refit_head(path, train, val)
    refitted = run_model(path, val)
    # A Mahalanobis distance of standardised descriptors is invariant to a per-dimension affine move.
    np.testing.assert_allclose(refitted.heads["global"], reference, rtol=5e-3)


def test_refitting_for_openvino_undoes_the_move_beside_the_file_and_leaves_the_file_as_it_is(fp32_model, images,
                                                                                              tmp_path):
    """OpenVINO computes the descriptors its own way, so its head is fitted on its own; the file TensorRT and ONNX
    Runtime read stays byte for byte the one they were gated on."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")

    train, val = images
    reference = run_model(fp32_model, val).heads["global"]
    path = _copy(fp32_model, tmp_path)
    _move_descriptors(path, scale=1.3, shift=0.1)
    before = sha256_file(path)
    record = refit_head_for_openvino(path, tmp_path / "head.npz", train, val).record
    assert record["refitted"] and record["library"] == "OpenVINO" and sha256_file(path) == before
    moved = OpenVinoBackend(path, precision="int8", threads=1)(val).heads["global"]
    refitted = OpenVinoBackend(path, precision="int8", threads=1, head=tmp_path / "head.npz")(val).heads["global"]
    assert np.median(moved) > 2 * np.median(reference)
    np.testing.assert_allclose(refitted, reference, rtol=1e-2)


def test_bf16_gets_its_own_head_fitted_on_openvino_bf16_descriptors(fp32_model, images, tmp_path):
    """bf16 runs model.onnx itself, so its head can only live beside it; fitted on bf16's own descriptors it gives
    the RUN's distances back where the descriptors moved."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")

    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 arithmetic (OpenVINO would run f32 under the name)")
    train, val = images
    reference = run_model(fp32_model, val).heads["global"]
    path = _copy(fp32_model, tmp_path)
    _move_descriptors(path, scale=1.3, shift=0.1)
    record = refit_head_for_openvino(path, tmp_path / "bf16.npz", train, val, precision="bf16").record
    assert record["refitted"] and record["library"] == "OpenVINO bf16"
    refitted = OpenVinoBackend(path, precision="bf16", threads=1, head=tmp_path / "bf16.npz")(val).heads["global"]
    assert np.corrcoef(refitted, reference)[0, 1] > 0.95 and abs(np.median(refitted) / np.median(reference) - 1) < 0.1



def test_the_refits_own_pass_gives_the_refitted_files_outputs_on_the_gates_images(fp32_model, images, tmp_path):
    """The gate reads a refitted file's outputs from the pass its refit made (SLSG's map and score as the file gave
    them, the heads' scores by their twins over the new statistics): they are what the refitted file gives."""
    train, val = images
    path = _copy(fp32_model, tmp_path)
    _move_descriptors(path, scale=1.3, shift=0.1)
    done = refit_head(path, train, val)
    fresh = run_model(path, val)
    assert done.outputs is not None and done.record["gate_outputs"].startswith("the refit's pass")
    np.testing.assert_array_equal(done.outputs.maps, fresh.maps)
    assert set(done.outputs.heads) == set(fresh.heads)
    for name, scores in fresh.heads.items():
        np.testing.assert_allclose(done.outputs.heads[name], scores, rtol=CHECK_TOLERANCE, err_msg=name)
    np.testing.assert_allclose(done.outputs.score, fresh.score, rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE)


def test_outputs_the_refitted_file_does_not_give_are_left_for_the_gate_to_run(fp32_model, images, tmp_path):
    _, val = images
    path = _copy(fp32_model, tmp_path)
    own = run_model(path, val)
    off = Outputs(own.maps, own.score + 1e-2, own.heads)  # a twin that drifted from the graph
    kept, how = checked(off, val, lambda part: run_model(path, part))
    assert kept is None and "tolerance" in how["gate_outputs"]
    kept, how = checked(own, val, lambda part: run_model(path, part))
    assert kept is own

    def overflowing(part):  # the file gives inf where the float64 twin stays finite
        got = run_model(path, part)
        return Outputs(got.maps, got.score, {**got.heads, "global": np.full_like(got.heads["global"], np.inf)})

    kept, how = checked(own, val, overflowing)
    assert kept is None and "nan" in how["gate_outputs"]



def test_openvinos_pass_on_every_stream_gives_what_the_line_computes_in_the_order_given(fp32_model, images):
    """The refit's OpenVINO passes run the images on every stream at once (`ImagePass`); each image is still run
    alone, so the outputs are the line's (one request at a time) to the bit, image for image."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")

    _, val = images
    model = onnx.load(str(fp32_model))
    names = [o.name for o in model.graph.output]
    streams = ImagePass(model.SerializeToString(), "int8", names)
    together = streams(val[::-1])
    request = compile_cpu(model.SerializeToString(), compile_config("int8")).create_infer_request()
    for i, image in enumerate(val[::-1]):
        request.infer({"image": image[None]})
        for name in names:
            np.testing.assert_array_equal(together[name][i:i + 1], request.get_tensor(name).data)


def test_a_file_far_below_the_map_floor_is_refused_at_a_first_glance_and_an_other_is_probed_whole(fp32_model,
                                                                                                   images,
                                                                                                   monkeypatch):
    """OpenVINO's pass over the gate's images shows every GLANCE-th image first; a file whose maps there already sit
    far below the rule's floor is refused without the rest of the pass, and any other file's probe holds every image
    in the gate's order, as a pass without a glance gives it."""
    pytest.importorskip("openvino", reason="openvino is not installed here (pip install 'slsg[openvino]')")

    train, val = images
    gate = np.concatenate([val, train[:6]])
    reference = run_model(fp32_model, gate)
    whole = openvino_probe(fp32_model, gate, len(val))
    looked = []

    def refuse(picked, maps):
        looked.append(picked)
        return _refused_at_a_glance(reference, 0.9, picked, maps)

    watched = openvino_probe(fp32_model, gate, len(val), refuse=refuse)
    assert isinstance(watched, Probe) and list(looked[0]) == list(range(0, len(gate), GLANCE))
    np.testing.assert_array_equal(watched.seen.maps, whole.seen.maps)
    np.testing.assert_array_equal(watched.seen.descriptors, whole.seen.descriptors)
    np.testing.assert_array_equal(watched.seen.rows, whole.seen.rows)
    assert {k: list(v) for k, v in watched.seen.heads.items()} == {k: list(v) for k, v in whole.seen.heads.items()}

    noise = Outputs(np.random.default_rng(0).random(reference.maps.shape, np.float32), reference.score)
    passes = []

    def counted(describe, part, *args, **kwargs):
        passes.append(len(part))
        return descriptors(describe, part, *args, **kwargs)

    monkeypatch.setattr(head_refit, "descriptors", counted)
    refused = openvino_probe(fp32_model, gate, len(val),  # a reference the file's maps do not follow
                             refuse=lambda picked, maps: _refused_at_a_glance(noise, 0.9, picked, maps))
    assert isinstance(refused, dict) and not refused["passed"] and refused["glance"] == len(looked[0])
    assert refused["map_pearson"] < 0.9 - GLANCE_MARGIN and "first" in refused["reasons"][0]
    assert passes == [len(looked[0])]  # the rest of the gate's images never ran
