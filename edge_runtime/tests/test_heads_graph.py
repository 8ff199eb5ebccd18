"""What the heads' refit computes: the trunk alone serves the training images only when it gives the whole graph's
values exactly."""

from __future__ import annotations

import numpy as np

from edge_runtime.heads.graph import Describer


def _whole(batch: np.ndarray) -> dict[str, np.ndarray]:
    return {"descriptor": batch.reshape(len(batch), -1).mean(axis=1), "score": batch.max(axis=(1, 2, 3))}


def test_a_trunk_that_gives_the_whole_graphs_values_serves_the_training_images() -> None:
    describe = Describer(_whole, 2, "lib", trunk=lambda: lambda b: {"descriptor": _whole(b)["descriptor"]})
    training = describe.for_training(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    assert training.part == "trunk" and training.library == "lib" and training.batch == 2


def test_a_trunk_whose_values_move_is_not_used() -> None:
    """A fusion that changes with the cut moves the values: the training images then go through the whole graph."""
    moved = Describer(_whole, 2, "lib", trunk=lambda: lambda b: {"descriptor": _whole(b)["descriptor"] + 1e-6})
    images = np.ones((2, 4, 4, 3), np.uint8)
    assert moved.for_training(images) is moved and moved.part == "whole graph"
    without = Describer(_whole, 2, "lib")
    assert without.for_training(images) is without
