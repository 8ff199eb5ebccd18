"""A multiply-accumulate counter: counts what aten actually runs, attributed to the network's parts.

It intercepts convolutions and matrix products at the dispatcher, so the graph block's matmuls count
as much as the convolutions, and nothing depends on how a module is written.
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

#: the parts `slsg info` reports, by top-level attribute of SLSGNet
PARTS = {"encoder": "encoder", "skips": "attention skips", "graph": "graph layer", "aux": "aux head",
         "decoder": "decoder", "global_head": "global head", "local_head": "local head"}


def _conv_macs(args, out) -> int:
    weight = args[1]
    return out.numel() * prod(weight.shape[1:])  # out elems × (cin/groups · kh · kw)


def _mm_macs(args, out) -> int:
    a = args[0] if len(args) == 2 else args[1]
    return out.numel() * a.shape[-1]


_COUNTERS = {
    aten.convolution.default: _conv_macs,
    aten.mm.default: _mm_macs,
    aten.bmm.default: _mm_macs,
    aten.matmul.default: _mm_macs,
    aten.addmm.default: lambda args, out: out.numel() * args[1].shape[-1],
}


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.part = "other"
        self.macs: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        counter = _COUNTERS.get(func)
        if counter is not None:
            self.macs[self.part] += int(counter(args, out))
        return out


class PartsView(nn.Module):
    """The SLSG network and, optionally, the fitted heads as the counter's parts (modules shared, not copied)."""

    def __init__(self, net: nn.Module, global_head: nn.Module | None = None,
                 local_head: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        for attr in ("encoder", "skips", "graph", "aux", "decoder"):
            setattr(self, attr, getattr(net, attr))
        self.global_head = global_head
        self.local_head = local_head

    def forward(self, x: torch.Tensor):
        feats = self.net.encode(x)
        out = [self.net.decode(feats)]
        out += [head(feats) for head in (self.global_head, self.local_head) if head is not None]
        return tuple(out)


def count_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """MACs of one forward pass, per part (keys of PARTS' values) plus "total"."""
    counter = _Counter()
    hooks = []
    for attr, label in PARTS.items():
        module = getattr(model, attr, None)
        if module is None:
            continue
        for m in module if isinstance(module, nn.ModuleList) else [module]:
            hooks.append(m.register_forward_pre_hook(lambda *_, label=label: setattr(counter, "part", label)))
            hooks.append(m.register_forward_hook(lambda *_: setattr(counter, "part", "other")))
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    result = {label: counter.macs.get(label, 0) for label in PARTS.values()}
    if counter.macs.get("other"):
        result["other"] = counter.macs["other"]
    result["total"] = sum(counter.macs.values())
    return result


def count_params(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    return total, sum(p.numel() for p in module.parameters() if p.requires_grad)
