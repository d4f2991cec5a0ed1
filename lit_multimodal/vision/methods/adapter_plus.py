"""Adapter+ (Steitz & Roth, CVPR 2024): a bottleneck after the whole block with a learned channel-wise scale.

``x <- Block(x); x <- x + sigma * DropPath(U GELU(D x + d) + u)`` (visinf/adapter_plus ``forward_post``).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from lit_multimodal.vision.methods.base import Recipe, TuningMethod
from lit_multimodal.vision.methods.layers import Bottleneck, drop_path_or_identity, retype_block


class AdapterPlusModule(nn.Module):
    """The Adapter+ branch: bottleneck (GELU, no dropout), its own drop-path and the channel scale ``sigma``.

    Args:
        dim: token width.
        hidden: bottleneck width.
        drop_path: the adapter's drop-path rate.
    """

    def __init__(self, dim: int, hidden: int, drop_path: float) -> None:
        super().__init__()
        self.bottleneck = Bottleneck(dim, hidden, "gelu", 0.0, 1.0, "houlsby")
        self.drop_path = drop_path_or_identity(drop_path)
        self.scaling = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled adapter branch (without the residual)."""
        return self.scaling * self.drop_path(self.bottleneck(x))


class AdapterPlusBlock(Block):
    """A timm Block followed by the Adapter+ branch on its output."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """The block, then ``x + adapter(x)``."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x + self.adapter(x)


class AdapterPlus(TuningMethod):
    """Adapter+: post-block GELU bottleneck with learned channel scale; near-identity (std 0.01) init.

    Defaults: visinf/adapter_plus ``conf/adapter/adapter_plus.yaml`` (d 8 fixed; the paper's "opt." variant
    picks d in 1..32 per task), adapter drop-path 0.1; recipe AdamW lr 1e-3, wd 1e-4 without decay on 1-D
    tensors, batch 64, 100 epochs.

    Args:
        dim: bottleneck width ``d``.
        drop_path: drop-path rate of the adapter branch.
    """

    name = "adapter_plus"
    label = "Adapter+"
    identity_at_init = False
    recipe = Recipe("adamw", 1e-3, 1e-4, 64, "visinf/adapter_plus conf/train (AdamW, no wd on 1-D/scaling)")

    def __init__(self, dim: int = 8, drop_path: float = 0.1) -> None:
        self.dim = dim
        self.drop_path = drop_path

    def attach(self, vit: VisionTransformer) -> None:
        """Adds ``adapter`` to every block."""
        for block in vit.blocks:
            retype_block(block, AdapterPlusBlock)
            block.adapter = AdapterPlusModule(vit.embed_dim, self.dim, self.drop_path)
