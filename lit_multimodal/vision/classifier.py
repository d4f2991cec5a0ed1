"""One image classifier for every tuning method: ViT backbone, optional visual prompts, linear head."""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from lit_multimodal.vision.backbones import embed_tokens, pooled_features
from lit_multimodal.vision.methods.base import TuningMethod, build_method
from lit_multimodal.vision.prompts import VisualPrompts
from lit_multimodal.vision.tuning import freeze_all_but

# Official head init: the focal-loss prior 0.01 as the bias, -log((1 - 0.01) / 0.01).
HEAD_BIAS_PRIOR = -math.log((1 - 0.01) / 0.01)


def make_head(in_features: int, num_classes: int) -> nn.Linear:
    """The official VPT head: one Linear, weight kaiming-normal (fan_out), bias -4.59512."""
    head = nn.Linear(in_features, num_classes)
    nn.init.kaiming_normal_(head.weight, a=0, mode="fan_out")
    nn.init.constant_(head.bias, HEAD_BIAS_PRIOR)
    return head


class ViTClassifier(nn.Module):
    """A timm ViT tuned by one method (prompts, injected modules or a choice of tensors) and a linear head.

    The forward pass is the same for every method. Parts of the backbone that hold no trainable
    parameter (and see no prompt upstream) run without autograd, and stay in eval mode while the
    rest trains, so their dropout and drop-path stay off exactly as in the official ``train()`` override.

    Args:
        backbone: a headless timm ``VisionTransformer``.
        num_classes: output classes.
        tuning: the method: a registered name (``vpt_deep``, ``lora``, ... see
            :func:`~lit_multimodal.vision.methods.list_methods`) built with its defaults, or a
            :class:`~lit_multimodal.vision.methods.TuningMethod` instance carrying its options.
        num_prompts: prompt length ``p`` when ``tuning`` is a ``vpt_*`` name.
        prompt_dropout: dropout on prompts when ``tuning`` is a ``vpt_*`` name.
        prompt_project: prompt width before a projection to the token width; -1 for none (``vpt_*`` names).
        partial_blocks: trainable last blocks when ``tuning`` is ``partial``.
        activation_checkpointing: recompute each block's activations in the backward pass instead of storing
            them (blocks that run under autograd only): less memory for ViT-L/H or long prompts, about one
            more block forward per step.
        attention: scaled-dot-product-attention kernel. ``auto``: PyTorch's choice (fused flash/efficient
            kernels), except under CPU bf16 autocast, where the plain ``math`` kernel runs on the bf16 GEMMs
            and beats the fused CPU kernel; ``fused`` or ``math`` force one.
    """

    def __init__(
        self,
        backbone: VisionTransformer,
        num_classes: int,
        tuning: str | TuningMethod,
        num_prompts: int = 0,
        prompt_dropout: float = 0.0,
        prompt_project: int = -1,
        partial_blocks: int = 1,
        activation_checkpointing: bool = False,
        attention: str = "auto",
    ) -> None:
        super().__init__()
        if attention not in ("auto", "fused", "math"):
            raise ValueError(f"attention must be auto, fused or math; got {attention!r}")
        self.method = build_method(
            tuning,
            num_prompts=num_prompts,
            prompt_dropout=prompt_dropout,
            prompt_project=prompt_project,
            partial_blocks=partial_blocks,
        )
        self.tuning = self.method.name
        self.activation_checkpointing = activation_checkpointing
        self.attention = attention
        base = {id(p) for p in backbone.parameters()}
        extra = self.method.attach(backbone)
        self.backbone = backbone
        self.prompts: VisualPrompts | None = extra if isinstance(extra, VisualPrompts) else None
        self.head = make_head(backbone.num_features, num_classes)
        # Parameters the method added (injected into the backbone or next to it): never counted as backbone.
        self.added_names = frozenset(
            n for n, p in self.named_parameters() if id(p) not in base and not n.startswith("head.")
        )
        self.apply_tuning()

    def _stages(self) -> list[tuple[list[nn.Module], list[nn.Parameter]]]:
        """Backbone stages in forward order as (modules, loose parameters): embedding, blocks, final norms."""
        vit = self.backbone
        embed_params = [p for p in (vit.cls_token, vit.pos_embed) if p is not None]
        stages = [([vit.patch_embed, vit.pos_drop, vit.patch_drop, vit.norm_pre], embed_params)]
        stages += [([block], []) for block in vit.blocks]
        tail = [vit.norm, vit.fc_norm, vit.head_drop, vit.head]
        stages.append(([m for m in tail if m is not None], []))
        return stages

    @staticmethod
    def _stage_trains(stage: tuple[list[nn.Module], list[nn.Parameter]]) -> bool:
        modules, loose = stage
        params = [p for m in modules for p in m.parameters()] + loose
        return any(p.requires_grad for p in params)

    def apply_tuning(self) -> None:
        """Freezes everything the method does not train and records where autograd must start."""
        names = [n for n, _ in self.named_parameters()]
        freeze_all_but(self, self.method.trainable_names(names, set(self.added_names)))
        stages = self._stages()
        trains = [self._stage_trains(stage) for stage in stages]
        if self.method.shared_across_blocks and any(
            p.requires_grad for n, p in self.named_parameters() if n in self.added_names
        ):
            # Parameters outside the blocks that every block reads: every block trains.
            trains[1:-1] = [True] * (len(trains) - 2)
        self._autograd_from = (
            0 if self.prompts is not None else next((i for i, t in enumerate(trains) if t), len(stages))
        )
        frozen = [modules for (modules, _), t in zip(stages, trains, strict=True) if not t]
        self._frozen_stage_modules = [m for modules in frozen for m in modules]
        # Apply the modes now: Lightning captures per-module modes before validation and restores exactly
        # those afterwards, so frozen parts must already be in eval mode before the first train() call.
        self.train(self.training)

    def train(self, mode: bool = True) -> ViTClassifier:
        """Like ``nn.Module.train`` but frozen backbone parts stay in eval mode (Lightning calls this often)."""
        super().train(mode)
        if mode:
            for module in self._frozen_stage_modules:
                module.eval()
            # Containers (the ViT, its block list, attention modules) follow their children, so a fully
            # frozen backbone reports eval mode throughout.
            for module in reversed(list(self.backbone.modules())):
                children = list(module.children())
                if children:
                    module.training = any(child.training for child in children)
        return self

    def _grad(self, stage_index: int):
        return nullcontext() if stage_index >= self._autograd_from else torch.no_grad()

    def _attention_kernel(self, images: torch.Tensor):
        """The SDPA kernel context for this device and precision (see ``attention``)."""
        cpu_bf16 = (
            images.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )
        if self.attention == "math" or (self.attention == "auto" and cpu_bf16):
            return sdpa_kernel([SDPBackend.MATH])
        if self.attention == "fused":
            return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION])
        return nullcontext()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, D)`` with prompts spliced as the official VPT."""
        with self._attention_kernel(images):
            return self._forward_features(images)

    def _forward_features(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.backbone
        with self._grad(0):
            tokens = embed_tokens(vit, images)
            if self.prompts is not None:
                tokens = self.prompts.insert(tokens)
        for index, block in enumerate(vit.blocks):
            with self._grad(index + 1):
                if self.prompts is not None and self.prompts.deep and index > 0:
                    tokens = self.prompts.replace(tokens, index)
                if self.activation_checkpointing and torch.is_grad_enabled():
                    tokens = checkpoint(block, tokens, use_reentrant=False)
                else:
                    tokens = block(tokens)
        with self._grad(len(vit.blocks) + 1):
            return pooled_features(vit, tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.forward_features(images))
