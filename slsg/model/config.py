"""Model configuration: everything needed to rebuild the network, saved beside every artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from edge_runtime.preprocess import as_hw, check_size
from slsg.model.backbones import backbone_names, backbone_spec

BACKBONES = backbone_names()


@dataclass
class ModelConfig:
    """The SLSG network. Defaults reproduce the reference (faithful mode) on ResNet-18.

    The `*_reference` flags keep the reference's oddities (reference §6 ⚑); each is one line:
    - relpos_reference_sign: add −G to the cosine similarity (prefers distant nodes); False adds +G.
    - value_conv_reference: the value conv is 3×3 on the N×1 node layout (a 1-D k=3 conv over raster order).
    - softmax_unscaled: the dense attention softmax has no 1/√d.
    - encoder_bn: "train" lets the frozen encoder's BatchNorm follow train/eval mode (reference); "eval" freezes it.
    """

    backbone: str = "resnet18"
    size: int | tuple[int, int] = 256  # N (square) or (height, width), each a multiple of 32
    knn_candidates: int = 27
    dilation: int = 3
    qk_channels: int | None = None  # None → half the bottleneck channels (256 for ResNet-18)
    aux_channels: int = 32
    decoder_widths: tuple[int, int, int] | None = None  # None → follows the backbone
    relpos_reference_sign: bool = True
    value_conv_reference: bool = True
    softmax_unscaled: bool = True
    encoder_bn: str | None = None  # None → "train" for resnet18 (faithful), "eval" for efficientnet_lite0
    graph_kernel: str = "reference"  # "reference" | "fused" (Triton on CUDA, reference on CPU)

    def __post_init__(self) -> None:
        spec = backbone_spec(self.backbone)
        h, w = check_size(self.size)
        self.size = h if h == w else (h, w)
        if self.encoder_bn is None:
            self.encoder_bn = spec.encoder_bn
        if self.encoder_bn not in ("train", "eval"):
            raise ValueError(f"encoder_bn must be 'train' or 'eval', got {self.encoder_bn!r}")
        if self.graph_kernel not in ("reference", "fused"):
            raise ValueError(f"graph_kernel must be 'reference' or 'fused', got {self.graph_kernel!r}")
        if self.graph_kernel == "fused" and not self.softmax_unscaled:
            raise ValueError("the fused graph kernel implements the reference's unscaled softmax only")
        if self.decoder_widths is not None:
            self.decoder_widths = tuple(int(w) for w in self.decoder_widths)

    @property
    def hw(self) -> tuple[int, int]:
        """The input size as (height, width)."""
        return as_hw(self.size)

    @property
    def grid(self) -> tuple[int, int]:
        """The bottleneck grid (stride 16) the graph layer and its relative-position table are built for."""
        h, w = self.hw
        return h // 16, w // 16

    @property
    def normalization_name(self) -> str:
        return backbone_spec(self.backbone).normalization

    @property
    def widths(self) -> tuple[int, int, int]:
        return self.decoder_widths or backbone_spec(self.backbone).decoder_widths

    @property
    def num_neighbours(self) -> int:
        return len(range(0, self.knn_candidates, self.dilation))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder_widths"] = list(self.decoder_widths) if self.decoder_widths else None
        d["size"] = self.size if isinstance(self.size, int) else list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config has unknown fields {sorted(unknown)}: made by a newer slsg?")
        return cls(**d)
