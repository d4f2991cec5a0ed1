"""Pfeiffer adapter (Pfeiffer et al., AdapterFusion, EACL 2021) as PETL_Vision's ``lora_p_adapter``.

One sequential bottleneck after the MLP, before the residual: ``m = MLP(N2); m <- m + s*ad(m); x <- x + m``.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block, VisionTransformer

from lit_multimodal.vision.methods.base import TuningMethod
from lit_multimodal.vision.methods.layers import Bottleneck, retype_block


class PfeifferBlock(Block):
    """A timm Block with one adapter after the MLP, before the residual."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """Attention, then the MLP branch rewritten as ``m + ad(m)`` before its residual."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)))
        m = self.ls2(self.mlp(self.norm2(x)))
        return x + self.drop_path2(m + self.adapter_mlp(m))


class Pfeiffer(TuningMethod):
    """Pfeiffer adapter: a ReLU bottleneck after the MLP; zero up-projection, so the backbone at init.

    Defaults: PETL_Vision README (d 8, scale 1, ``lora_xavier`` init, ReLU, dropout 0.1).

    Args:
        dim: bottleneck width ``d``.
        scale: output scale ``s`` (PETL_Vision grid 0.01, 0.1, 1, 10).
        dropout: dropout inside the adapter.
        init: ``lora_xavier`` (PETL_Vision ``lora_p_adapter``) or ``xavier`` (``rand_p_adapter``).
    """

    name = "pfeiffer"
    label = "Pfeiffer"

    def __init__(self, dim: int = 8, scale: float = 1.0, dropout: float = 0.1, init: str = "lora_xavier") -> None:
        self.dim = dim
        self.scale = scale
        self.dropout = dropout
        self.init = init
        if init == "xavier":
            self.identity_at_init = False

    def attach(self, vit: VisionTransformer) -> None:
        """Adds ``adapter_mlp`` to every block."""
        for block in vit.blocks:
            retype_block(block, PfeifferBlock)
            block.adapter_mlp = Bottleneck(vit.embed_dim, self.dim, "relu", self.dropout, self.scale, self.init)
