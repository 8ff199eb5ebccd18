"""The reference-style PyTorch inference, as a timed case: what `slsg bench` measures everything against.

The reference's `eval_model` feeds a float tensor that is already normalised to a model in `eval()` under
`torch.no_grad()`, then takes softmax channel 1 and the mean of its top 100 values. We time the same at
batch 1, plus the uint8 → normalised tensor step as `pre` (our ONNX graphs do that inside, so both
end-to-end numbers start from the same uint8 frame).
"""

from __future__ import annotations

import numpy as np
import torch

from edge_runtime.preprocess import normalize, prepare
from edge_runtime.scoring import TOP_K
from edge_runtime.timing import Case, timed
from slsg.model import SLSGNet
from slsg.model.preprocess import normalization_for


def eager_case(model: SLSGNet, frame: np.ndarray, name: str = "torch") -> Case:
    """Batch-1 eager inference of `model` on `frame` (uint8 BGR), timed as pre / infer / post."""
    model = model.eval()
    norm = normalization_for(model.cfg.normalization_name)
    size = model.cfg.hw

    def to_tensor() -> torch.Tensor:
        return torch.from_numpy(normalize(prepare(frame, size)[None], norm))

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)[0]

    def score(logits: torch.Tensor) -> float:
        with torch.no_grad():
            p = torch.softmax(logits, dim=1)[:, 1].flatten(1)
            return float(torch.topk(p, min(TOP_K, p.shape[1]), dim=1).values.mean())

    def step() -> dict[str, float]:
        x, pre = timed(to_tensor)
        logits, infer = timed(lambda: forward(x))
        _, post = timed(lambda: score(logits))
        return {"pre": pre, "infer": infer, "post": post}

    return Case(name, step, "end-to-end")
