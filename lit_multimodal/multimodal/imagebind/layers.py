"""Building blocks of ImageBind, named as in the official code so that state-dict keys match its checkpoints.

Everything runs batch-first ``(B, L, D)``; the official trunk transposes to sequence-first around
``nn.MultiheadAttention``, which changes nothing numerically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn

__all__ = [
    "Attention",
    "Block",
    "IMUPreprocessor",
    "LearnableLogitScaling",
    "Mlp",
    "Normalize",
    "PadIm2Video",
    "PatchEmbedGeneric",
    "RGBDTPreprocessor",
    "SelectElement",
    "SelectEOSAndProject",
    "SpatioTemporalPosEmbeddingHelper",
    "TextPreprocessor",
    "Trunk",
    "build_causal_attention_mask",
]


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


class PadIm2Video(nn.Module):
    """Turns an image (B, C, H, W) into a video (B, C, T, H, W) by repeating it ``ntimes`` along time.

    A 5-D input with a single frame is repeated as well; other videos pass through unchanged.

    Args:
        ntimes: Number of frames of the output when the input has one frame.
        time_dim: Index of the time dimension.
    """

    def __init__(self, ntimes: int, time_dim: int = 2) -> None:
        super().__init__()
        self.ntimes = ntimes
        self.time_dim = time_dim

    def forward(self, x: Tensor) -> Tensor:
        """Adds or repeats the time dimension.

        Args:
            x: Image (B, C, H, W) or video (B, C, T, H, W).

        Returns:
            Video (B, C, T', H, W).
        """
        if x.ndim == 4:
            x = x.unsqueeze(self.time_dim)
        elif x.ndim != 5:
            raise ValueError(f"expected an image (B,C,H,W) or a video (B,C,T,H,W), got shape {tuple(x.shape)}")
        if x.shape[self.time_dim] == 1:
            repeats = [1] * x.ndim
            repeats[self.time_dim] = self.ntimes
            x = x.repeat(repeats)
        return x


class PatchEmbedGeneric(nn.Module):
    """Official ``PatchEmbedGeneric``: projection stem, flatten to tokens, optional LayerNorm.

    Args:
        proj_stem: Modules applied in order; a single module is stored directly as ``proj`` (official key
            ``proj.weight``), several as ``nn.Sequential`` (``proj.1.weight``).
        norm_layer: Optional norm applied to the tokens.
    """

    def __init__(self, proj_stem: Sequence[nn.Module], norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = nn.Sequential(*proj_stem) if len(proj_stem) > 1 else proj_stem[0]
        self.norm_layer = norm_layer

    def forward(self, x: Tensor) -> Tensor:
        """Projects and flattens.

        Args:
            x: Input (B, C, ...spatial).

        Returns:
            Tokens (B, N, D).
        """
        x = self.proj(x).flatten(2).transpose(1, 2)
        if self.norm_layer is not None:
            x = self.norm_layer(x)
        return x


class SpatioTemporalPosEmbeddingHelper(nn.Module):
    """Learnable position embedding (1, num_cls + num_patches, D) with the official 2-D interpolation.

    Args:
        patches_layout: Patch grid of the reference input, e.g. (1, 16, 16) or (12, 19).
        num_cls_tokens: Leading tokens that are not interpolated.
        embed_dim: Width.
    """

    def __init__(self, patches_layout: tuple[int, ...], num_cls_tokens: int, embed_dim: int) -> None:
        super().__init__()
        self.patches_layout = tuple(patches_layout)
        self.num_patches = math.prod(self.patches_layout)
        self.num_cls_tokens = num_cls_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + num_cls_tokens, embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)

    def get_pos_embedding(self, num_patches: int) -> Tensor:
        """Position embedding for ``num_patches`` patch tokens.

        As in official ImageBind, the table is used as is when the count matches and bicubically
        interpolated otherwise; interpolation is only defined for a single-frame square grid (images).

        Args:
            num_patches: Patch tokens of the current input (without class tokens).

        Returns:
            Embedding (1, num_cls + num_patches', D).

        Raises:
            ValueError: If the count differs and the grid cannot be interpolated.
        """
        if num_patches == self.num_patches:
            return self.pos_embed
        layout = self.patches_layout
        if len(layout) != 3 or layout[0] != 1 or layout[1] != layout[2]:
            raise ValueError(
                f"input gives {num_patches} patches but the position embedding covers {self.num_patches} "
                f"(layout {layout}); interpolation is only supported for single-frame square grids"
            )
        cls_embed = self.pos_embed[:, : self.num_cls_tokens]
        grid = self.pos_embed[:, self.num_cls_tokens :]
        side, dim = layout[1], grid.shape[-1]
        # interpolate() has no bfloat16 bicubic kernel on every backend; the official code casts too.
        resized = F.interpolate(
            grid.reshape(1, side, side, dim).permute(0, 3, 1, 2).float(),
            scale_factor=math.sqrt(num_patches / self.num_patches),
            mode="bicubic",
        ).to(grid.dtype)
        return torch.cat([cls_embed, resized.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


class RGBDTPreprocessor(nn.Module):
    """Official ``RGBDTPreprocessor`` (also used, via its ``rgbt_stem``, for audio and thermal).

    Tokens = stem(input), a class token is prepended and the position embedding added.

    Args:
        rgbt_stem: Stem for vision/audio/thermal inputs, or None.
        depth_stem: Stem for depth inputs, or None (exactly one of the two is set in ImageBind).
        patches_layout: Patch grid that the stem produces for the reference input size.
        embed_dim: Width.
        num_cls_tokens: Number of class tokens.
    """

    def __init__(
        self,
        rgbt_stem: PatchEmbedGeneric | None,
        depth_stem: PatchEmbedGeneric | None,
        patches_layout: tuple[int, ...],
        embed_dim: int,
        num_cls_tokens: int = 1,
    ) -> None:
        super().__init__()
        if (rgbt_stem is None) == (depth_stem is None):
            raise ValueError("exactly one of rgbt_stem and depth_stem must be given")
        self.rgbt_stem = rgbt_stem
        self.depth_stem = depth_stem
        self.num_cls_tokens = num_cls_tokens
        self.embed_dim = embed_dim
        self.pos_embedding_helper = SpatioTemporalPosEmbeddingHelper(patches_layout, num_cls_tokens, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, num_cls_tokens, embed_dim))
        with torch.no_grad():  # official "openclip" init
            scale = embed_dim**-0.5
            nn.init.normal_(self.pos_embedding_helper.pos_embed).mul_(scale)
            nn.init.normal_(self.cls_token).mul_(scale)

    def forward(self, x: Tensor) -> dict[str, dict[str, Tensor]]:
        """Tokenises the input.

        Args:
            x: Input of the stem (e.g. (B,3,224,224) image, (B,1,128,204) spectrogram).

        Returns:
            ``{"trunk": {"tokens": (B, 1 + N, D)}, "head": {}}``.
        """
        stem = self.rgbt_stem if self.rgbt_stem is not None else self.depth_stem
        tokens = stem(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        tokens = tokens + self.pos_embedding_helper.get_pos_embedding(tokens.shape[1] - self.num_cls_tokens)
        return {"trunk": {"tokens": tokens}, "head": {}}


def build_causal_attention_mask(context_length: int) -> Tensor:
    """Additive causal mask: 0 on and below the diagonal, -inf above (official ImageBind).

    Args:
        context_length: Sequence length L.

    Returns:
        Float mask (L, L).
    """
    return torch.full((context_length, context_length), float("-inf")).triu_(1)


class TextPreprocessor(nn.Module):
    """Official ``TextPreprocessor``: token + position embedding, causal mask, EOT position for the head.

    Args:
        vocab_size: Vocabulary size.
        context_length: Number of token positions.
        embed_dim: Width.
        causal_masking: Register the causal mask (persistent buffer ``mask``) and pass it to the trunk.
    """

    def __init__(self, vocab_size: int, context_length: int, embed_dim: int, causal_masking: bool = True) -> None:
        super().__init__()
        self.context_length = context_length
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, embed_dim))
        self.causal_masking = causal_masking
        if causal_masking:
            self.register_buffer("mask", build_causal_attention_mask(context_length))
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        with torch.no_grad():  # official "openclip" init
            nn.init.normal_(self.token_embedding.weight, std=0.02)
            nn.init.normal_(self.pos_embed, std=0.01)

    def forward(self, text: Tensor) -> dict[str, dict[str, Tensor]]:
        """Embeds token ids.

        Args:
            text: Token ids (B, context_length), EOT being the largest id of each row.

        Returns:
            ``{"trunk": {"tokens", ["attn_mask"]}, "head": {"seq_len": argmax of ids}}``.
        """
        if text.ndim != 2 or text.shape[1] != self.context_length:
            raise ValueError(f"expected token ids (B, {self.context_length}), got shape {tuple(text.shape)}")
        tokens = self.token_embedding(text) + self.pos_embed
        out: dict[str, dict[str, Tensor]] = {"trunk": {"tokens": tokens}, "head": {"seq_len": text.argmax(dim=-1)}}
        if self.causal_masking:
            out["trunk"]["attn_mask"] = self.mask
        return out


class IMUPreprocessor(nn.Module):
    """Official ``IMUPreprocessor``: (B, C, T) → patches of ``kernel_size`` samples → Linear + LN tokens.

    Args:
        imu_stem: Stem whose ``proj`` is Linear(C·kernel_size → D) and ``norm_layer`` a LayerNorm.
        kernel_size: Samples per patch.
        embed_dim: Width.
        num_samples: Input length T.
        num_cls_tokens: Number of class tokens.
    """

    def __init__(
        self, imu_stem: PatchEmbedGeneric, kernel_size: int, embed_dim: int, num_samples: int, num_cls_tokens: int = 1
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.embed_dim = embed_dim
        self.num_cls_tokens = num_cls_tokens
        self.pos_embed = nn.Parameter(torch.empty(1, num_samples // kernel_size + num_cls_tokens, embed_dim))
        self.cls_token = nn.Parameter(torch.zeros(1, num_cls_tokens, embed_dim))
        self.imu_stem = imu_stem
        with torch.no_grad():  # official init
            nn.init.normal_(self.pos_embed, std=0.01)
            nn.init.normal_(self.cls_token).mul_(embed_dim**-0.5)

    def forward(self, imu: Tensor) -> dict[str, dict[str, Tensor]]:
        """Tokenises an IMU sequence.

        Args:
            imu: Samples (B, C, T).

        Returns:
            ``{"trunk": {"tokens": (B, 1 + T / kernel_size, D)}, "head": {}}``.
        """
        # (B, C, T) -> (B, T/k, C, k) -> (B, T/k, C*k): channel-major within a patch, as in official ImageBind.
        patches = imu.unfold(-1, self.kernel_size, self.kernel_size).permute(0, 2, 1, 3)
        patches = patches.reshape(patches.shape[0], patches.shape[1], -1)
        tokens = self.imu_stem.norm_layer(self.imu_stem.proj(patches))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return {"trunk": {"tokens": tokens}, "head": {}}


class SelectElement(nn.Module):
    """Selects token ``index`` of (B, L, D).

    Args:
        index: Token position.
    """

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        """Selects the token.

        Args:
            x: Tokens (B, L, D).

        Returns:
            (B, D).
        """
        return x[:, self.index, ...]


class SelectEOSAndProject(nn.Module):
    """Text head: token at ``seq_len`` (the EOT position) of each row, then ``proj``.

    Args:
        proj: Module applied to the selected tokens (LayerNorm, Linear).
    """

    def __init__(self, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: Tensor, seq_len: Tensor) -> Tensor:
        """Selects and projects.

        Args:
            x: Tokens (B, L, D).
            seq_len: Position per row (B,).

        Returns:
            (B, out_dim).
        """
        return self.proj(x[torch.arange(x.shape[0], device=x.device), seq_len])


class Normalize(nn.Module):
    """L2 normalisation along ``dim``.

    Args:
        dim: Dimension to normalise.
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Normalises.

        Args:
            x: Input.

        Returns:
            ``x / ||x||``.
        """
        return F.normalize(x, dim=self.dim, p=2)


class LearnableLogitScaling(nn.Module):
    """Multiplies by ``min(exp(log_logit_scale), max_logit_scale)`` (official ImageBind).

    ``log_logit_scale`` is a Parameter when learnable, otherwise a persistent buffer.

    Args:
        logit_scale_init: Initial scale (not its log).
        learnable: Whether the scale is a parameter.
        max_logit_scale: Upper clamp of the scale.
    """

    def __init__(
        self, logit_scale_init: float = 1 / 0.07, learnable: bool = True, max_logit_scale: float = 100.0
    ) -> None:
        super().__init__()
        self.max_logit_scale = max_logit_scale
        self.logit_scale_init = logit_scale_init
        self.learnable = learnable
        log_logit_scale = torch.full((), math.log(logit_scale_init))
        if learnable:
            self.log_logit_scale = nn.Parameter(log_logit_scale)
        else:
            self.register_buffer("log_logit_scale", log_logit_scale)

    def forward(self, x: Tensor) -> Tensor:
        """Scales.

        Args:
            x: Input.

        Returns:
            Scaled input.
        """
        return torch.clip(self.log_logit_scale.exp(), max=self.max_logit_scale) * x
