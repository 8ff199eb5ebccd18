"""Whole-graph passes over many images run one batch per worker at once, and come back in the images' order."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_runtime.backends.passes import run_batches, session_threads


def test_batches_run_on_every_worker_at_once_and_come_back_in_order():
    workers = 2
    together = threading.Barrier(workers, timeout=10)  # broken unless `workers` runs are inside at the same time
    images = np.arange(7 * 3).reshape(7, 3)

    def run(batch: np.ndarray) -> int:
        together.wait()
        return int(batch[0, 0])

    # six single-image batches: three rounds in which both workers must be inside `run` at once
    got = list(run_batches(run, images[:6], 1, workers))
    assert [value for _, value in got] == [int(v) for v in images[:6, 0]]
    assert all(np.array_equal(batch, images[k:k + 1]) for k, (batch, _) in enumerate(got))


def test_a_single_worker_runs_the_batches_one_after_another_in_the_callers_thread():
    caller = threading.get_ident()
    seen = []
    got = list(run_batches(lambda b: seen.append(threading.get_ident()) or len(b), np.zeros((5, 2)), 2, workers=1))
    assert [(len(batch), value) for batch, value in got] == [(2, 2), (2, 2), (1, 1)]
    assert seen == [caller] * 3


def test_a_failing_run_stops_the_pass_with_its_own_error():
    def run(batch: np.ndarray) -> int:
        if batch[0] == 3:
            raise ValueError("image 3 is broken")
        return int(batch[0])

    with pytest.raises(ValueError, match="image 3 is broken"):
        list(run_batches(run, np.arange(6), 1, workers=2))


def test_a_caller_that_stops_reading_cancels_the_batches_still_queued():
    started = []
    release = threading.Event()

    def run(batch: np.ndarray) -> int:
        started.append(int(batch[0]))
        release.wait(timeout=10)
        return int(batch[0])

    images = np.arange(100)
    batches = run_batches(run, images, 1, workers=2)
    release.set()
    first = next(batches)
    batches.close()  # the caller gives up after one batch
    assert first[1] == 0
    assert len(started) <= 2 * 2 + 2  # the queued window, not all 100 images


def test_parallel_sessions_are_single_threaded_so_the_cores_are_not_oversubscribed():
    assert session_threads(2) == 1
    assert session_threads(1) == 0  # one run at a time: ONNX Runtime uses every core itself
