"""Export bugs injected on purpose: each must fail parity (export/tests/test_parity.py); the parity limits were
set against them (docs/export.md, "Parity")."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import torch

from edge_runtime.preprocess import HALF, IMAGENET
from export.onnx_export import ExportConfig, _prune_dead, export_onnx
from slsg.model.preprocess import InputAdapter


class NoColourFlip(InputAdapter):
    """The adapter with the BGR→RGB flip forgotten: the network sees BGR."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.permute(0, 3, 1, 2).to(torch.float32) * self.scale + self.shift


def wrong_normalisation(deploy, out: Path) -> Path:
    """Exported with the other backbone's mean/std (ImageNet ↔ 0.5/0.5)."""
    buggy = copy.deepcopy(deploy)
    current = (buggy.adapter.shift.flatten().tolist(), buggy.adapter.scale.flatten().tolist())
    imagenet = InputAdapter(IMAGENET)
    other = HALF if current[0] == imagenet.shift.flatten().tolist() else IMAGENET
    buggy.adapter = InputAdapter(other)
    export_onnx(buggy, out, ExportConfig(simplify=False))
    return out


def wrong_colour_order(deploy, out: Path) -> Path:
    buggy = copy.deepcopy(deploy)
    fixed = NoColourFlip(IMAGENET)
    fixed.scale, fixed.shift = buggy.adapter.scale.clone(), buggy.adapter.shift.clone()
    buggy.adapter = fixed
    export_onnx(buggy, out, ExportConfig(simplify=False))
    return out


def residual_adds(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Add nodes joining two computed tensors (a skip connection), in graph order."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n for n in model.graph.node if n.op_type == "Add" and len(n.input) == 2
            and not set(n.input) & constants]


def missing_layer(src: Path, out: Path) -> Path:
    """The middle residual join of the graph dropped (its Add passes one input through): a layer lost on the
    way. Not the first: the encoder is frozen, and an early branch of a random-init encoder can be ~0."""
    model = onnx.load(str(src))
    adds = residual_adds(model)
    add = adds[len(adds) // 2]
    skip, dropped = add.input[0], add.output[0]
    for node in model.graph.node:
        node.input[:] = [skip if i == dropped else i for i in node.input]
    model.graph.node.remove(add)
    _prune_dead(model)
    onnx.save(model, str(out))
    return out
