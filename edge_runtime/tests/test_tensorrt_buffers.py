"""Buffer plans, the engine I/O contract and output post-processing, without TensorRT."""

import numpy as np
import pytest

from edge_runtime.scoring import image_score
from edge_runtime.tensorrt.backend import (
    TensorSpec,
    batch_chunks,
    check_io_contract,
    numpy_dtype,
    outputs_from_buffers,
    plan_buffers,
)
from edge_runtime.tensorrt.cuda import host_array
from edge_runtime.tensorrt.errors import EngineMismatch

H, W = 32, 48


def slsg_tensors(batch=-1, score=True, map_dtype=np.float32, heads=()):
    t = [TensorSpec("image", True, (batch, H, W, 3), np.dtype(np.uint8)),
         TensorSpec("anomaly_map", False, (batch, 1, H, W), np.dtype(map_dtype))]
    if score:
        t.append(TensorSpec("score", False, (batch,), np.dtype(np.float32)))
    t += [TensorSpec(f"score_{h}", False, (batch,), np.dtype(np.float32)) for h in heads]
    return t


@pytest.mark.parametrize("name, dtype", [("DataType.FLOAT", np.float32), ("HALF", np.float16),
                                         ("DataType.UINT8", np.uint8), ("INT32", np.int32)])
def test_tensorrt_type_names_map_to_numpy(name, dtype):
    assert numpy_dtype(name) == np.dtype(dtype)


def test_types_numpy_cannot_hold_are_refused():
    with pytest.raises(EngineMismatch, match="BF16 has no numpy equivalent"):
        numpy_dtype("DataType.BF16")


def test_plan_sizes_every_buffer_for_the_batch():
    plan = plan_buffers(slsg_tensors(), batch=4, zero_copy=False)
    assert plan.by_name("image").shape == (4, H, W, 3) and plan.by_name("image").nbytes == 4 * H * W * 3
    assert plan.by_name("anomaly_map").nbytes == 4 * H * W * 4
    assert plan.by_name("score").nbytes == 16
    assert [b.name for b in plan.inputs] == ["image"] and len(plan.outputs) == 2
    assert plan.total_bytes == 4 * H * W * 3 + 4 * H * W * 4 + 16
    assert not any(b.mapped for b in plan.buffers)


def test_integrated_gpu_plans_mapped_zero_copy_buffers():
    plan = plan_buffers(slsg_tensors(), batch=1, zero_copy=True)
    assert plan.zero_copy and all(b.mapped for b in plan.buffers)


def test_fp16_outputs_are_sized_as_fp16():
    plan = plan_buffers(slsg_tensors(map_dtype=np.float16), batch=2, zero_copy=False)
    assert plan.by_name("anomaly_map").nbytes == 2 * H * W * 2


def test_fixed_batch_engine_refuses_another_batch():
    with pytest.raises(EngineMismatch, match="fixed batch of 1, asked for 2"):
        plan_buffers(slsg_tensors(batch=1), batch=2, zero_copy=False)


def test_dynamic_image_size_is_refused():
    t = [TensorSpec("image", True, (-1, -1, -1, 3), np.dtype(np.uint8))]
    with pytest.raises(EngineMismatch, match="fixed image size"):
        plan_buffers(t, batch=1, zero_copy=False)


def test_slsg_contract_is_accepted_and_gives_the_size():
    assert check_io_contract(slsg_tensors()) == (H, W)
    assert check_io_contract(slsg_tensors(score=False)) == (H, W)


def test_every_score_head_output_is_part_of_the_contract():
    assert check_io_contract(slsg_tensors(heads=("slsg", "global", "texture"))) == (H, W)


def test_a_head_score_that_is_not_one_value_per_frame_is_refused():
    bad = slsg_tensors() + [TensorSpec("score_global", False, (-1, 2), np.dtype(np.float32))]
    with pytest.raises(EngineMismatch, match="'score_global' must be \\[N\\]"):
        check_io_contract(bad)


def test_outputs_outside_the_contract_are_refused_by_name():
    bad = slsg_tensors() + [TensorSpec("neighbours", False, (-1, 256, 9), np.dtype(np.int32))]
    with pytest.raises(EngineMismatch, match="'neighbours' is not part of the SLSG contract"):
        check_io_contract(bad)


@pytest.mark.parametrize("tensors, message", [
    ([TensorSpec("input", True, (1, 3, H, W), np.dtype(np.float32))], "no input 'image'"),
    ([TensorSpec("image", True, (1, 3, H, W), np.dtype(np.float32))], "expected uint8 \\[N,H,W,3\\]"),
    ([TensorSpec("image", True, (1, H, W, 3), np.dtype(np.uint8)),
      TensorSpec("logits", False, (1, 2, H, W), np.dtype(np.float32))], "'anomaly_map' must be float"),
    (slsg_tensors() + [TensorSpec("mask", True, (1, H, W), np.dtype(np.uint8))], "extra inputs"),
])
def test_foreign_engines_are_refused_with_what_they_have(tensors, message):
    with pytest.raises(EngineMismatch, match=message):
        check_io_contract(tensors)


def test_batches_are_split_to_the_engine_maximum():
    assert batch_chunks(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert batch_chunks(1, 8) == [(0, 1)]
    assert batch_chunks(0, 4) == []


def test_outputs_become_float32_maps_scores_and_every_head():
    rng = np.random.default_rng(0)
    raw = rng.random((4, 1, H, W)).astype(np.float16)       # the buffer holds 4; 3 frames were run
    score = np.array([0.1, 0.2, 0.3, 9], np.float16)
    named = {"anomaly_map": raw, "score": score, "score_slsg": score * 2, "score_global": score * 3}
    out = outputs_from_buffers(named, 3)
    assert out.maps.shape == (3, H, W) and out.maps.dtype == np.float32 and out.score.dtype == np.float32
    np.testing.assert_array_equal(out.maps, raw[:3, 0].astype(np.float32))
    assert set(out.heads) == {"slsg", "global"}
    np.testing.assert_array_equal(out.heads["global"], (score * 3)[:3].astype(np.float32))


def test_missing_score_output_uses_the_shared_score_rule():
    raw = np.random.default_rng(1).random((2, 1, H, W)).astype(np.float32)
    out = outputs_from_buffers({"anomaly_map": raw}, 2)
    np.testing.assert_array_equal(out.score, image_score(raw[:, 0]))


def test_outputs_are_copies_not_views_of_reused_buffers():
    raw = np.ones((1, 1, H, W), np.float32)
    score = np.ones(1, np.float32)
    out = outputs_from_buffers({"anomaly_map": raw, "score": score, "score_slsg": score}, 1)
    raw[:] = 0
    score[:] = 0
    assert out.maps.min() == 1 and out.score[0] == 1 and out.heads["slsg"][0] == 1


def test_host_array_views_raw_memory_in_place():
    backing = np.zeros(2 * 3 * 4, np.uint8)
    view = host_array(backing.ctypes.data, (2, 3), np.float32)
    view[1, 2] = 1.5
    assert backing.view(np.float32).reshape(2, 3)[1, 2] == 1.5
