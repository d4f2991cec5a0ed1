"""AdaptFormer (Chen et al., NeurIPS 2022): a scaled bottleneck parallel to the MLP, outside its drop-path.

``x <- x + Attn(N1)`` (R1), then ``x <- R1 + DropPath(MLP(norm2 R1)) + s (U drop(ReLU(D R1 + d)) + u)``
(ShoufaChen/AdaptFormer ``models/custom_modules.py``, ``ffn_adapter_layernorm_option=none``).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block, VisionTransformer

from lit_multimodal.vision.methods.base import TuningMethod
from lit_multimodal.vision.methods.layers import Bottleneck, retype_block


class AdaptFormerBlock(Block):
    """A timm Block whose MLP has a parallel adapter reading the MLP branch's input (before ``norm2``)."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """Attention, then ``x + DP(MLP(N2)) + s ad(x)`` with ``x`` the MLP branch's input."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x)))) + self.adapter_mlp(x)


class AdaptFormer(TuningMethod):
    """AdaptFormer: ReLU bottleneck parallel to the MLP, scale 0.1; zero up-projection (the backbone at init).

    Defaults: the AdaptFormer repo (``ffn_num`` 64, scale 0.1, ``lora`` init, dropout 0.1). The VTAB-1k
    rows usually quoted use d 8 (0.16M).

    Args:
        dim: bottleneck width ``d``.
        scale: output scale ``s``.
        dropout: dropout inside the adapter.
    """

    name = "adaptformer"
    label = "AdaptFormer"

    def __init__(self, dim: int = 64, scale: float = 0.1, dropout: float = 0.1) -> None:
        self.dim = dim
        self.scale = scale
        self.dropout = dropout

    def attach(self, vit: VisionTransformer) -> None:
        """Adds ``adapter_mlp`` to every block."""
        for block in vit.blocks:
            retype_block(block, AdaptFormerBlock)
            block.adapter_mlp = Bottleneck(vit.embed_dim, self.dim, "relu", self.dropout, self.scale, "lora_kaiming")
