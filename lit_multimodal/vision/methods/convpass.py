"""Convpass (Jie & Deng 2022): convolutional bypasses parallel to attention and MLP.

``x <- x + DP(Attn(N1)) + s DP(cp_a(N1))``, ``x <- x + DP(MLP(N2)) + s DP(cp_m(N2))`` with
``cp(t) = U drop(QG(Conv3x3(QG(D t + d)))) + u`` and ``QG(z) = z sigmoid(1.702 z)``. The patch tokens are
convolved on their grid; the CLS token is convolved alone as a 1x1 image, i.e. by the centre tap
(PETL-ViT ``convpass/vtab/convpass.py``, generalised from the hard-coded 14x14 and 768 to the backbone's
grid and width).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from lit_multimodal.vision.methods.base import TuningMethod
from lit_multimodal.vision.methods.layers import QuickGELU, retype_block


class ConvBypass(nn.Module):
    """One Convpass module ``cp`` (without the scale).

    Args:
        dim: token width.
        hidden: bypass width ``d``.
        grid: patch grid ``(H, W)``.
        dropout: dropout before the up-projection.
        xavier_conv: xavier-initialise the 3x3 conv; otherwise it starts as the identity (centre tap ``I``).
    """

    def __init__(self, dim: int, hidden: int, grid: tuple[int, int], dropout: float, xavier_conv: bool) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.down = nn.Linear(dim, hidden)
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.up = nn.Linear(hidden, dim)
        self.act = QuickGELU()
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.down.weight)
            nn.init.zeros_(self.down.bias)
            if xavier_conv:
                nn.init.xavier_uniform_(self.conv.weight)
            else:
                self.conv.weight.zero_()
                self.conv.weight[:, :, 1, 1] = torch.eye(hidden)
            nn.init.zeros_(self.conv.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``cp(t)`` for tokens ``(B, 1 + H W, D)``."""
        batch, tokens, _ = t.shape
        height, width = self.grid
        if tokens != 1 + height * width:
            raise ValueError(
                f"convpass needs one CLS token and a {height}x{width} patch grid ({1 + height * width} tokens); "
                f"got {tokens} tokens (prompts, registers or another input size)"
            )
        h = self.act(self.down(t))
        patches = h[:, 1:].transpose(1, 2).reshape(batch, -1, height, width)
        patches = self.conv(patches).reshape(batch, -1, height * width).transpose(1, 2)
        cls = self.conv(h[:, :1].transpose(1, 2).unsqueeze(-1))  # a 1x1 image: the centre tap and the bias
        h = torch.cat([cls.flatten(2).transpose(1, 2), patches], dim=1)
        return self.up(self.dropout(self.act(h)))


class ConvpassBlock(Block):
    """A timm Block with a conv bypass parallel to attention and one parallel to the MLP."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """Both branches with their scaled conv bypasses."""
        s = self.convpass_scale
        n1 = self.norm1(x)
        attn = self.ls1(self.attn(n1, attn_mask=attn_mask, is_causal=is_causal))
        x = x + self.drop_path1(attn) + s * self.drop_path1(self.adapter_attn(n1))
        n2 = self.norm2(x)
        return x + self.drop_path2(self.ls2(self.mlp(n2))) + s * self.drop_path2(self.adapter_mlp(n2))


class Convpass(TuningMethod):
    """Convpass: conv bypasses on both branches; zero up-projection, so the backbone at init.

    Defaults: PETL-ViT Convpass (d 8, identity conv init, dropout 0.1); the scale is chosen per task there
    (0.01 ... 100), 0.1 is the middle of that grid.

    Args:
        dim: bypass width ``d``.
        scale: output scale ``s``.
        dropout: dropout inside the bypass.
        xavier_conv: xavier-initialise the 3x3 conv instead of the identity.
    """

    name = "convpass"
    label = "Convpass"

    def __init__(self, dim: int = 8, scale: float = 0.1, dropout: float = 0.1, xavier_conv: bool = False) -> None:
        self.dim = dim
        self.scale = scale
        self.dropout = dropout
        self.xavier_conv = xavier_conv

    def attach(self, vit: VisionTransformer) -> None:
        """Adds ``adapter_attn`` and ``adapter_mlp`` bypasses to every block."""
        grid = vit.patch_embed.grid_size
        for block in vit.blocks:
            retype_block(block, ConvpassBlock)
            block.convpass_scale = self.scale
            for site in ("adapter_attn", "adapter_mlp"):
                block.add_module(site, ConvBypass(vit.embed_dim, self.dim, grid, self.dropout, self.xavier_conv))
