"""ImageBind's per-modality preprocessors (stems, position embeddings, class tokens), with the official names."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

__all__ = [
    "IMUPreprocessor",
    "PadIm2Video",
    "PatchEmbedGeneric",
    "RGBDTPreprocessor",
    "SpatioTemporalPosEmbeddingHelper",
    "TextPreprocessor",
    "build_causal_attention_mask",
]


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
