"""ImageBind's transformer trunk (attention, MLP, block), named as in the official code so checkpoint keys match.

Everything runs batch-first ``(B, L, D)``; the official trunk transposes to sequence-first around
``nn.MultiheadAttention``, which changes nothing numerically.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

__all__ = ["Attention", "Block", "Mlp", "Trunk"]


class Attention(nn.Module):
    """Multi-head self-attention with the parameters of ``nn.MultiheadAttention``, computed by SDPA.

    Parameter names and shapes are those of ``nn.MultiheadAttention(dim, num_heads, bias=True,
    add_bias_kv=...)``: ``in_proj_weight`` (3D, D), ``in_proj_bias`` (3D), optional ``bias_k``/``bias_v``
    (1, 1, D) and ``out_proj``.

    Args:
        dim: Model width D.
        num_heads: Number of heads; must divide ``dim``.
        add_bias_kv: Append a learned key/value position, like ``nn.MultiheadAttention(add_bias_kv=True)``.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None
        self.out_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialises as ``nn.MultiheadAttention._reset_parameters`` does."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Attends every position of ``x`` to every position (plus the bias position, if any).

        Args:
            x: Tokens (B, L, D).
            attn_mask: Optional additive float mask (L, L) or boolean mask (True = attend).

        Returns:
            Attention output (B, L, D).
        """
        batch, length, dim = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None:
            # nn.MultiheadAttention(add_bias_kv=True) appends bias_k/bias_v (already in projected space) as one
            # extra key/value position that every query can attend to, and pads attn_mask with a zero
            # (attend) column for it. SDPA has no such option, so the position is concatenated explicitly.
            k = torch.cat([k, self.bias_k.to(k.dtype).expand(batch, 1, dim)], dim=1)
            v = torch.cat([v, self.bias_v.to(v.dtype).expand(batch, 1, dim)], dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1), value=True if attn_mask.dtype == torch.bool else 0.0)
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(q.dtype)
        head_dim = dim // self.num_heads
        q = q.reshape(batch, length, self.num_heads, head_dim).transpose(1, 2)
        k = k.reshape(batch, k.shape[1], self.num_heads, head_dim).transpose(1, 2)
        v = v.reshape(batch, v.shape[1], self.num_heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):
    """``fc1`` → exact GELU → ``fc2`` (the official ImageBind MLP with dropout 0).

    Args:
        dim: Input and output width.
        hidden_dim: Hidden width.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Applies the MLP.

        Args:
            x: Tokens (..., dim).

        Returns:
            Tokens (..., dim).
        """
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (official ``BlockWithMasking`` without layer scale).

    Args:
        dim: Width.
        num_heads: Attention heads.
        add_bias_kv: See :class:`Attention`.
        mlp_ratio: MLP hidden width relative to ``dim``.
        drop_path: Stochastic-depth rate (identity when 0).
    """

    def __init__(
        self, dim: int, num_heads: int, add_bias_kv: bool = False, mlp_ratio: float = 4.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, add_bias_kv=add_bias_kv)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(mlp_ratio * dim))
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Applies the block.

        Args:
            x: Tokens (B, L, D).
            attn_mask: Optional attention mask, see :meth:`Attention.forward`.

        Returns:
            Tokens (B, L, D).
        """
        x = x + self.drop_path(self.attn(self.norm_1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm_2(x)))


class Trunk(nn.Module):
    """Official ``SimpleTransformer``: optional pre-transformer LayerNorm, then blocks.

    Drop-path rates grow linearly from 0 to ``drop_path_rate`` over the blocks ("progressive").

    Args:
        dim: Width.
        num_blocks: Number of blocks.
        num_heads: Attention heads.
        add_bias_kv: See :class:`Attention`.
        pre_transformer_ln: LayerNorm(eps 1e-6) before the first block (vision only in ImageBind).
        drop_path_rate: Rate of the last block.
        mlp_ratio: MLP hidden width relative to ``dim``.
    """

    def __init__(
        self,
        dim: int,
        num_blocks: int,
        num_heads: int,
        add_bias_kv: bool = False,
        pre_transformer_ln: bool = False,
        drop_path_rate: float = 0.0,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        # Index 0 keeps the official key ``pre_transformer_layer.0.*`` (the official index 1 is a rearrange).
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6) if pre_transformer_ln else nn.Identity())
        # Computed on the CPU so that the model can be built under ``torch.device("meta")``.
        rates = torch.linspace(0, drop_path_rate, num_blocks, device="cpu").tolist()
        self.blocks = nn.Sequential(
            *[Block(dim, num_heads, add_bias_kv=add_bias_kv, mlp_ratio=mlp_ratio, drop_path=r) for r in rates]
        )
        self.apply(_init_jax)

    def forward(self, tokens: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Runs the blocks.

        Args:
            tokens: Tokens (B, L, D).
            attn_mask: Optional attention mask shared by all blocks.

        Returns:
            Tokens (B, L, D).
        """
        tokens = self.pre_transformer_layer(tokens)
        for block in self.blocks:
            tokens = block(tokens, attn_mask=attn_mask)
        return tokens


@torch.no_grad()
def _init_jax(module: nn.Module) -> None:
    """Official trunk init ("jax"): xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
