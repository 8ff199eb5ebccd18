"""Import the authors' released `.tch` state dicts (reference §1.8) onto SLSGNet.

Encoder, attention skips and the graph layer map by name. The aux head and decoder map by order and
shape within their prefix (their Sequential indices are not documented), which is safe because every
tensor's shape is checked and every key must be used. Dead keys (ResNet fc is kept; LKA p1, the duplicate
f_query, the frozen relative_pos, Decoder.res_bn_relu) are tolerated; anything else is refused.
"""

from __future__ import annotations

import re

import torch

from slsg.model.network import SLSGNet

_NAME_RULES = [
    (r"^encoder_segment\.resnet18\.", "encoder."),
    (r"^LKA64\.(?:AT\.)?", "skips.0."),
    (r"^LKA128\.(?:AT\.)?", "skips.1."),
    (r"^LKA256\.(?:AT\.)?", "skips.2."),
    (r"^GCN3\.fc1\.", "graph.fc1."),
    (r"^GCN3\.fc2\.", "graph.fc2."),
    (r"^GCN3\.graph_conv\.dilated_knn_graph\.f_key\.", "graph.qk."),
    (r"^GCN3\.graph_conv\.gconv\.nn\.", "graph.fuse."),
    (r"^GCN3\.graph_conv\.gconv\.f_value\.", "graph.value."),
    (r"^GCN3\.graph_conv\.gconv\.W\.", "graph.out_proj."),
]
_SKIP_RENAMES = {"p2.": "proj."}
_DEAD = [
    r"^LKA(64|128|256)\.p1\.",
    r"^GCN3\.graph_conv\.dilated_knn_graph\.f_query\.",
    r"^GCN3\.relative_pos$",
    r"^decoder_segment\.res_bn_relu\.",
]
_ORDERED_GROUPS = [(r"^aux0(?!_out)", "aux.body."), (r"^aux0_out", "aux.out."), (r"^decoder_segment\.", "decoder.")]


class OfficialImportError(ValueError):
    """The file is not an SLSG reference state dict, or does not fit this configuration."""


def _rename(key: str) -> str | None:
    for pattern, target in _NAME_RULES:
        if re.match(pattern, key):
            rest = re.sub(pattern, "", key)
            if target.startswith("skips."):
                for old, new in _SKIP_RENAMES.items():
                    if rest.startswith(old):
                        rest = new + rest[len(old):]
            return target + rest
    return None


def convert_official_state_dict(official: dict[str, torch.Tensor], model: SLSGNet) -> dict[str, torch.Tensor]:
    """Reference layout → our state dict; raises OfficialImportError listing every key that did not match."""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    ordered: dict[str, list[str]] = {target: [] for _, target in _ORDERED_GROUPS}
    for key, tensor in official.items():
        if any(re.match(p, key) for p in _DEAD):
            continue
        new = _rename(key)
        if new is not None:
            if new not in own or tuple(own[new].shape) != tuple(tensor.shape):
                unmatched.append(key)
            else:
                out[new] = tensor
            continue
        group = next((t for p, t in _ORDERED_GROUPS if re.match(p, key)), None)
        if group is None:
            unmatched.append(key)
        else:
            ordered[group].append(key)
    for target, keys in ordered.items():
        ours = [k for k in own if k.startswith(target)]
        if len(ours) != len(keys):
            unmatched.extend(keys or [f"<{len(ours)} tensors expected for {target}*>"])
            continue
        for theirs, mine in zip(keys, ours):
            if tuple(official[theirs].shape) != tuple(own[mine].shape):
                unmatched.append(theirs)
            else:
                out[mine] = official[theirs]
    missing = [k for k in own if k not in out]
    if unmatched or missing:
        raise OfficialImportError(
            f"not an SLSG reference checkpoint for this configuration: {len(unmatched)} keys did not match "
            f"({unmatched[:8]}{' …' if len(unmatched) > 8 else ''}); {len(missing)} of ours were not filled "
            f"({missing[:8]}{' …' if len(missing) > 8 else ''})"
        )
    return out
