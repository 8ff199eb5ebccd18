"""Small real data shared by the training-side tests."""

from __future__ import annotations

import pytest

from slsg.data.synthetic_scene import SynthCounts, write_dataset


@pytest.fixture(scope="session")
def tiny_loco(tmp_path_factory):
    """A tiny synthetic LOCO-layout category at 64 px (train 12, validation 4, test 4+4+4)."""

    return write_dataset(tmp_path_factory.mktemp("data"), seed=0, counts=SynthCounts(12, 4, 4, 4, 4), size=64)
