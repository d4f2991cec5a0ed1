"""RepAdapter (Luo et al. 2023): a grouped linear adapter before ``attn.qkv`` and ``mlp.fc1``, merged after training.

``R(t) = t + s (G drop(A t + a) + b)`` with ``A`` a ``Conv1d(D, d, 1)`` and ``G`` a ``Conv1d(d, D, 1,
groups=g)`` (luogen1996/RepAdapter ``repadapter.py``, ``repblock``). ``R`` is affine at inference, so
``qkv(R(t))`` is one linear layer: ``W' = W M``, ``c' = W m + c`` for ``R(t) = M t + m``.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lit_multimodal.vision.methods.base import TuningMethod, plain_blocks
from lit_multimodal.vision.methods.layers import affine_of, remove_hooks_of


class RepAdapterModule(nn.Module):
    """``t + s (G drop(A t + a) + b)``, applied to a linear layer's input by a pre-hook.

    Args:
        dim: token width.
        hidden: adapter width ``d`` (divisible by ``groups``).
        groups: groups of ``G``.
        scale: ``s``.
        dropout: dropout on ``A t + a``.
    """

    def __init__(self, dim: int, hidden: int, groups: int, scale: float, dropout: float) -> None:
        super().__init__()
        if hidden % groups or dim % groups:
            raise ValueError(f"repadapter dim {hidden} and width {dim} must be divisible by groups {groups}")
        self.conv_A = nn.Conv1d(dim, hidden, 1)
        self.conv_B = nn.Conv1d(hidden, dim, 1, groups=groups)
        self.dropout = nn.Dropout(dropout)
        self.scale = scale
        nn.init.xavier_uniform_(self.conv_A.weight)
        nn.init.zeros_(self.conv_A.bias)
        nn.init.zeros_(self.conv_B.weight)
        nn.init.zeros_(self.conv_B.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``R(t)`` for tokens ``(B, N, D)`` or a matrix of vectors ``(M, D)``."""
        channels_first = t.transpose(-1, -2)  # Conv1d reads (B, C, N), or (C, N) unbatched
        out = self.conv_B(self.dropout(self.conv_A(channels_first)))
        return t + self.scale * out.transpose(-1, -2)

    def hook(self, module: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook: adapts the linear layer's input."""
        return (self(args[0]), *args[1:])


def _sites(vit: VisionTransformer) -> list[nn.Linear]:
    return [linear for block in plain_blocks(vit) for linear in (block.attn.qkv, block.mlp.fc1)]


class RepAdapter(TuningMethod):
    """RepAdapter: grouped adapters before ``qkv`` and ``fc1``; zero ``G``, so the backbone at init; merges.

    Defaults: luogen1996/RepAdapter (d 8, groups 2, dropout 0.1; scale per task in 0.1 ... 10, 1 here as
    for DTD; AdamW lr 1e-3, wd 1e-4).

    Args:
        dim: adapter width ``d``.
        groups: groups of the up-projection.
        scale: ``s``.
        dropout: dropout inside the adapter.
    """

    name = "repadapter"
    label = "RepAdapter"
    mergeable = True

    def __init__(self, dim: int = 8, groups: int = 2, scale: float = 1.0, dropout: float = 0.1) -> None:
        self.dim = dim
        self.groups = groups
        self.scale = scale
        self.dropout = dropout

    def attach(self, vit: VisionTransformer) -> None:
        """Gives ``attn.qkv`` and ``mlp.fc1`` of every block a ``repadapter`` and a pre-hook applying it."""
        for linear in _sites(vit):
            linear.repadapter = RepAdapterModule(linear.in_features, self.dim, self.groups, self.scale, self.dropout)
            linear.register_forward_pre_hook(linear.repadapter.hook)

    @torch.no_grad()
    def merge(self, vit: VisionTransformer) -> None:
        """``W' = W M``, ``c' = W m + c`` for the adapter's affine map ``M t + m``."""
        for linear in _sites(vit):
            adapter = linear.repadapter.eval()
            matrix, offset = affine_of(adapter, linear.in_features, linear.weight)
            bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features).to(linear.weight)
            new_bias = linear.weight @ offset + bias
            linear.weight.copy_(linear.weight @ matrix)
            if linear.bias is None:
                linear.bias = nn.Parameter(new_bias)
            else:
                linear.bias.copy_(new_bias)
            remove_hooks_of(linear, adapter)
            del linear.repadapter
