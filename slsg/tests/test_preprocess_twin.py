"""The torch normalisation inside the model equals the runtime's numpy definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime.preprocess import HALF, IMAGENET, normalize
from slsg.model.preprocess import InputAdapter


@pytest.mark.parametrize("norm", [IMAGENET, HALF])
def test_torch_adapter_equals_numpy_normalize(norm):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 32, 48, 3), dtype=np.uint8)
    ours = InputAdapter(norm)(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(ours, normalize(frames, norm), atol=2e-6)
