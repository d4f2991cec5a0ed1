"""Frozen ViT backbones built from timm's ``VisionTransformer``.

Any timm ViT architecture name works (``vit_base_patch16_224``, ``vit_large_patch16_224``,
``vit_huge_patch14_224``, the tiny ``test_vit``), with optional overrides of its geometry. Weights never
come from a hub: ``pretrained=False`` always, and the weights of a local file are loaded by
:mod:`lit_multimodal.vision.checkpoints`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lit_multimodal.training.errors import SettingError

Pooling = Literal["cls", "mean"]


@dataclass
class BackboneConfig:
    """Which ViT to build and where its weights come from.

    Args:
        arch: timm architecture name, e.g. ``vit_base_patch16_224`` (the paper's ViT-B/16),
            ``vit_large_patch16_224``, ``vit_huge_patch14_224`` or ``test_vit``.
        img_size: input resolution; the position embedding of a checkpoint trained at another size is
            resampled on load.
        pooling: ``cls`` takes the CLS token after the final LayerNorm (supervised and MoCo-v3 backbones);
            ``mean`` averages every token but CLS (prompts included, as the official MAE code) and applies
            ``fc_norm``.
        checkpoint: local weights file: a timm/torch state dict (``.pth``/``.pt``/``.bin`` or
            ``.safetensors``), a JAX ViT ``.npz`` (``imagenet21k_ViT-B_16.npz``), MAE pre-training
            (``mae_pretrain_vit_base.pth``) or a MoCo-v3 checkpoint (``linear-vit-b-300ep.pth.tar``); or
            ``quickstart:digits0-4`` for the quickstart's self-made backbone (resolved by ``lit-mm`` before the
            model is built, see :mod:`lit_multimodal.references`). ``None`` keeps the random
            initialisation.
        checkpoint_format: ``auto`` picks the reader from the file (``.npz`` is ``jax``, ``.safetensors``
            is ``timm``, a torch file by its structure); ``timm``, ``jax``, ``mae`` or ``mocov3`` names it,
            and a file without that structure is an error.
        dropout: dropout after the position embedding and in the attention-projection/MLP outputs. It is
            only active in parts of the backbone that train (the official full fine-tuning uses 0.1).
        drop_path: stochastic depth rate (MAE pre-training used 0.1); likewise only active where blocks train.
        overrides: extra keyword arguments for the timm constructor, e.g.
            ``{patch_size: 4, embed_dim: 96, depth: 6, num_heads: 3}`` for a small quickstart ViT.
    """

    arch: str = "vit_base_patch16_224"
    img_size: int = 224
    pooling: Pooling = "cls"
    checkpoint: str | None = None
    checkpoint_format: Literal["auto", "timm", "jax", "mae", "mocov3"] = "auto"
    dropout: float = 0.0
    drop_path: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)


def build_vit(config: BackboneConfig) -> VisionTransformer:
    """Builds a headless timm ViT (``num_classes=0``) with random weights.

    Args:
        config: the backbone description.

    Returns:
        A ``VisionTransformer`` whose ``forward_head(x, pre_logits=True)`` yields the pooled feature.

    Raises:
        SettingError: for an unknown architecture or one that is not a class-token ViT.
    """
    kwargs: dict[str, Any] = dict(config.overrides)
    kwargs.update(
        pretrained=False,
        num_classes=0,
        img_size=config.img_size,
        global_pool="token" if config.pooling == "cls" else "avg",
        fc_norm=config.pooling == "mean",
        pos_drop_rate=config.dropout,
        proj_drop_rate=config.dropout,
        drop_path_rate=config.drop_path,
    )
    if not timm.is_model(config.arch):
        raise SettingError(f"model.backbone.arch {config.arch!r} is not a timm architecture{_suggest(config.arch)}")
    try:
        model = timm.create_model(config.arch, **kwargs)
    except (RuntimeError, TypeError, ValueError, AssertionError) as err:  # bad overrides or geometry
        raise SettingError(f"model.backbone {config.arch!r} cannot be built: {type(err).__name__}: {err}") from None
    if not isinstance(model, VisionTransformer):
        raise SettingError(
            f"model.backbone.arch {config.arch!r} is a {type(model).__name__}, not a timm VisionTransformer"
        )
    if not model.has_class_token or model.num_prefix_tokens != 1:
        raise SettingError(
            f"backbone.arch {config.arch!r} has {model.num_prefix_tokens} prefix tokens; prompt tuning "
            "here needs exactly one CLS token and no register tokens"
        )
    return model


def _suggest(arch: str) -> str:
    """``"; did you mean ..."`` with the closest timm ViT names, or ``"; ViT names: ..."`` when none is close."""
    import difflib

    names = [name for name in timm.list_models("*vit*") if name.startswith(("vit_", "test_vit"))]
    close = difflib.get_close_matches(arch, names, n=3, cutoff=0.6)
    if close:
        return f"; did you mean {', '.join(close)}?"
    return "; ViT names include vit_base_patch16_224, vit_large_patch16_224, vit_huge_patch14_224, test_vit"


def patch_area(vit: VisionTransformer) -> int:
    """Number of pixels in one patch (``patch_h * patch_w``)."""
    height, width = vit.patch_embed.patch_size
    return int(height) * int(width)


def embed_tokens(vit: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Patch embedding, CLS token and position embedding (then timm's pre-norm, if any).

    Returns:
        Tokens ``(B, 1 + N, D)`` ready for the first block; prompts are spliced in *after* this step, so
        they never receive a position embedding.
    """
    x = vit.patch_embed(images)
    x = vit._pos_embed(x)
    x = vit.patch_drop(x)
    return vit.norm_pre(x)


def pooled_features(vit: VisionTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """Final norm, pooling and ``fc_norm`` of timm's ViT: the feature the classification head reads."""
    return vit.forward_head(vit.norm(tokens), pre_logits=True)


def backbone_stages(vit: VisionTransformer) -> list[nn.Module]:
    """The backbone's parts in forward order: embedding parts, each block, the final norms."""
    embed = [vit.patch_embed, vit.pos_drop, vit.patch_drop, vit.norm_pre]
    return [*embed, *vit.blocks, vit.norm, vit.fc_norm]
