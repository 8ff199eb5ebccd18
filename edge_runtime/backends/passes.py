"""Many images through one model, as fast as the CPU allows: one image per core at once.

An export runs its models over hundreds of images (calibration, every precision's gate, each head refit). The
models take one image at a time (static batch 1), and at batch 1 a session's own threads share little work: a
depthwise network spends its time moving memory, not multiplying. Running one single-threaded session call per core
at the same time keeps every core busy. An ONNX Runtime session may be run from several threads at once and releases
the GIL while it runs, so this needs threads, not processes (docs/results.md, "Where an export's time goes").

The frame loop on the line does not use this: it judges one frame at a time and wants that frame's latency. The
teach loop's refit on the line does, as the export's refits do (one session on every core before, one per core now).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

S = TypeVar("S")
T = TypeVar("T")


def pass_workers() -> int:
    """How many single-threaded runs go at once: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_threads(workers: int) -> int:
    """The intra-op threads each session gets when `workers` runs share the cores (0: ONNX Runtime decides)."""
    return 1 if workers > 1 else 0


def run_batches(run: Callable[[np.ndarray], T], images: np.ndarray, batch: int,
                workers: int = 1) -> Iterator[tuple[np.ndarray, T]]:
    """(batch, `run(batch)`) for consecutive batches of `images` (views, not copies), in order.

    With `workers` > 1 that many batches run at once, each in its own thread: only for a `run` that is safe to call
    from several threads and releases the GIL (an ONNX Runtime session; not an OpenVINO infer request). At most
    two batches per worker are queued ahead, and a caller that stops reading (an error, Ctrl-C) cancels the queued
    ones: only the batches already running are waited for."""
    parts = (images[i:i + batch] for i in range(0, len(images), max(1, batch)))
    if workers <= 1:
        for part in parts:
            yield part, run(part)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slsg-pass")
    queued: deque[tuple[np.ndarray, Future]] = deque()
    try:
        for part in parts:
            queued.append((part, pool.submit(run, part)))
            if len(queued) >= 2 * workers:
                done, future = queued.popleft()
                yield done, future.result()
        while queued:
            done, future = queued.popleft()
            yield done, future.result()
    finally:
        for _, future in queued:
            future.cancel()
        pool.shutdown(wait=True)


def in_order(work: Callable[[S], T], items: Sequence[S]) -> list[T]:
    """`work(item)` for every item, one item per core at once, in the items' order: for work that releases the GIL
    as ONNX Runtime does (OpenCV decoding and resizing an image). An exception from `work` is raised here."""
    workers = min(pass_workers(), len(items))
    if workers <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slsg-work") as pool:
        return list(pool.map(work, items))
