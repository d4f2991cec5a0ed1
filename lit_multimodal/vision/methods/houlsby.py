"""Houlsby adapter (Houlsby et al., ICML 2019) as PETL_Vision's ``rand_h_adapter``: two sequential bottlenecks.

Per block: ``a = Attn(N1); a <- a + s*ad_a(a); x <- x + a``, the same for the MLP branch, each adapter
before its residual add (PETL_Vision ``sequential_after``). PETL_Vision applies a second, independent
drop-path to ``a + ad(a)``; here one drop-path wraps the branch as in timm (equal without drop-path).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block, VisionTransformer

from lit_multimodal.vision.methods.base import TuningMethod
from lit_multimodal.vision.methods.layers import Bottleneck, retype_block


class HoulsbyBlock(Block):
    """A timm Block with an adapter after the attention and after the MLP, before each residual."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """Attention and MLP branches, each rewritten as ``a + ad(a)`` before its residual."""
        a = self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal))
        x = x + self.drop_path1(a + self.adapter_attn(a))
        m = self.ls2(self.mlp(self.norm2(x)))
        return x + self.drop_path2(m + self.adapter_mlp(m))


class Houlsby(TuningMethod):
    """Houlsby adapter: ReLU bottlenecks after attention and MLP; random (xavier) init, so not identity at init.

    Defaults: PETL_Vision README (d 8, scale 1, ``xavier`` init, ReLU, dropout 0.1).

    Args:
        dim: bottleneck width ``d``.
        scale: output scale ``s`` (PETL_Vision grid 0.01, 0.1, 1, 10).
        dropout: dropout inside the adapter.
        init: ``xavier`` (PETL_Vision ``rand_h_adapter``) or ``lora_xavier`` (zero up-projection).
    """

    name = "houlsby"
    label = "Houlsby"
    identity_at_init = False

    def __init__(self, dim: int = 8, scale: float = 1.0, dropout: float = 0.1, init: str = "xavier") -> None:
        self.dim = dim
        self.scale = scale
        self.dropout = dropout
        self.init = init

    def attach(self, vit: VisionTransformer) -> None:
        """Adds ``adapter_attn`` and ``adapter_mlp`` to every block."""
        for block in vit.blocks:
            retype_block(block, HoulsbyBlock)
            for site in ("adapter_attn", "adapter_mlp"):
                block.add_module(site, Bottleneck(vit.embed_dim, self.dim, "relu", self.dropout, self.scale, self.init))
