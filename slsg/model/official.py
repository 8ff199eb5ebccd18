"""Import the authors' released `.tch` state dicts (reference §1.8) onto SLSGNet.

Every tensor maps by name (never by its position in the file, so a re-saved file with another key order still
lands right): the encoder, attention skips and graph layer by their module names, the aux head and decoder by
the Sequential indices of the reference's definitions (conv at 0/1/3/4…, upsampling and ReLU hold no tensors).
Every tensor's shape is checked and every one of ours must be filled. Dead keys (ResNet fc is kept; LKA p1,
the duplicate f_query, Decoder.res_bn_relu) are tolerated; the frozen `relative_pos` is dropped, but only after
checking it equals ours (a different one means the checkpoint was made for another grid or rule); anything
else is refused.
"""

from __future__ import annotations

import re

import torch

from edge_runtime.errors import SlsgError
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


def _head_modules() -> dict[str, str]:
    """Reference module (Sequential index) → ours, for the aux head and the decoder (reference §1.4, §1.5)."""
    table = {"aux0.0": "aux.body.0.0", "aux0.1": "aux.body.0.1", "aux0.3": "aux.body.1.0", "aux0.4": "aux.body.1.1",
             "aux0_out.0": "aux.out.0.0", "aux0_out.1": "aux.out.0.1", "aux0_out.3": "aux.out.1"}
    d = "decoder_segment."
    for n in (1, 2, 3):  # up: Upsample, conv, BN, ReLU;  db: conv, BN, ReLU, conv, BN, ReLU
        table |= {f"{d}up{n}.1": f"decoder.up{n}.0", f"{d}up{n}.2": f"decoder.up{n}.1",
                  f"{d}db{n}.0": f"decoder.db{n}.0.0", f"{d}db{n}.1": f"decoder.db{n}.0.1",
                  f"{d}db{n}.3": f"decoder.db{n}.1.0", f"{d}db{n}.4": f"decoder.db{n}.1.1"}
    table |= {f"{d}up4.0": "decoder.up4.0", f"{d}up4.1": "decoder.up4.1",  # up4 has no upsampling
              f"{d}db4.0": "decoder.db4.0", f"{d}db4.1": "decoder.db4.1",
              # final_out_seg: Upsample, conv, BN, ReLU, conv, BN, ReLU, conv
              f"{d}final_out_seg.1": "decoder.final.0.0", f"{d}final_out_seg.2": "decoder.final.0.1",
              f"{d}final_out_seg.4": "decoder.final.1.0", f"{d}final_out_seg.5": "decoder.final.1.1",
              f"{d}final_out_seg.7": "decoder.final.2"}
    return table


_HEAD_MODULES = _head_modules()
_DEAD = [
    r"^LKA(64|128|256)\.p1\.",
    r"^GCN3\.graph_conv\.dilated_knn_graph\.f_query\.",
    r"^decoder_segment\.res_bn_relu\.",
]
RELATIVE_POS = "GCN3.relative_pos"


class OfficialImportError(SlsgError, ValueError):
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
    module, _, tensor = key.rpartition(".")
    ours = _HEAD_MODULES.get(module)
    return f"{ours}.{tensor}" if ours is not None else None


def check_relative_pos(theirs: torch.Tensor, model: SLSGNet) -> None:
    """The reference saves its frozen relative-position term (1×N×N); ours is rebuilt from the config. They must
    agree, or the imported graph would pick other neighbours than the one that was trained."""
    ours = model.graph.relative_pos
    theirs = theirs.detach().float().reshape(-1, *theirs.shape[-2:])[0]
    if tuple(theirs.shape) != tuple(ours.shape):
        raise OfficialImportError(
            f"{RELATIVE_POS} is {tuple(theirs.shape)} but this model's graph has {tuple(ours.shape)}: the checkpoint "
            f"was trained at another input size (the reference's is 256×256)")
    diff = float((theirs - ours.cpu()).abs().max())
    if diff > 1e-4:
        raise OfficialImportError(
            f"{RELATIVE_POS} differs from this model's by up to {diff:.3g}: the checkpoint was made with another "
            "relative-position rule (sign or embedding); check ModelConfig.relpos_reference_sign")


def convert_official_state_dict(official: dict[str, torch.Tensor], model: SLSGNet) -> dict[str, torch.Tensor]:
    """Reference layout → our state dict; raises OfficialImportError listing every key that did not match."""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    for key, tensor in official.items():
        if key == RELATIVE_POS:
            continue
        if any(re.match(p, key) for p in _DEAD):
            continue
        new = _rename(key)
        if new is None or new not in own or tuple(own[new].shape) != tuple(tensor.shape) or new in out:
            unmatched.append(key)
        else:
            out[new] = tensor
    missing = [k for k in own if k not in out]
    if unmatched or missing:
        raise OfficialImportError(
            f"not an SLSG reference checkpoint for this configuration: {len(unmatched)} keys did not match "
            f"({unmatched[:8]}{' …' if len(unmatched) > 8 else ''}); {len(missing)} of ours were not filled "
            f"({missing[:8]}{' …' if len(missing) > 8 else ''})"
        )
    if RELATIVE_POS in official:
        check_relative_pos(official[RELATIVE_POS], model)
    return out
