"""LoRA (Hu et al. 2022) and DoRA (Liu et al., ICML 2024) through peft's injection into timm's linear layers.

peft replaces each targeted ``nn.Linear`` (matched by name suffix: ``attn.qkv``, ``attn.proj``, ``mlp.fc1``,
``mlp.fc2``) by a LoRA layer holding the original as ``base_layer``, so the frozen weights keep their
identity and are counted as backbone. Merging uses peft's own ``merge()`` per layer and puts the base
layer back, which leaves plain timm names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from timm.models.vision_transformer import VisionTransformer

from lit_multimodal.vision.methods.base import PETL_ADAMW, TuningMethod

if TYPE_CHECKING:
    from peft import LoraConfig

SITES = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


class LoRA(TuningMethod):
    """LoRA: ``out += (alpha / r) * B A dropout(x)`` on the targeted linears, B zero-initialised.

    Defaults are NOAH's VTAB-1k setting (also PETL_Vision's): rank 8 on ``attn.qkv`` (q, k and v), no
    ``alpha / r`` factor (alpha = r), dropout 0.1.

    Args:
        r: rank.
        alpha: scale numerator; the delta is multiplied by ``alpha / r``. None means ``alpha = r`` (scale 1).
        dropout: dropout on the LoRA input.
        targets: timm module names to adapt, any of ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``.
        layers: indices of the blocks to adapt; None for all.
    """

    name = "lora"
    label = "LoRA"
    recipe = PETL_ADAMW
    mergeable = True
    use_dora = False

    def __init__(
        self,
        r: int = 8,
        alpha: float | None = None,
        dropout: float = 0.1,
        targets: Sequence[str] = ("attn.qkv",),
        layers: Sequence[int] | None = None,
    ) -> None:
        unknown = sorted(set(targets) - set(SITES))
        if unknown or not targets:
            raise ValueError(f"{self.name}.targets must be among {', '.join(SITES)}; got {list(targets)}")
        if r < 1:
            raise ValueError(f"{self.name}.r must be >= 1; got {r}")
        self.r = r
        self.alpha = alpha
        self.dropout = dropout
        self.targets = tuple(targets)
        self.layers = None if layers is None else tuple(layers)

    def config(self) -> LoraConfig:
        """The peft configuration of this method."""
        from peft import LoraConfig  # imported here: the registry stays cheap to import (reports, plots)

        return LoraConfig(
            r=self.r,
            lora_alpha=self.r if self.alpha is None else self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.targets),
            layers_to_transform=None if self.layers is None else list(self.layers),
            layers_pattern=None if self.layers is None else "blocks",
            use_dora=self.use_dora,
            bias="none",
        )

    def attach(self, vit: VisionTransformer) -> None:
        """Replaces the targeted linears by peft LoRA layers (peft freezes the rest; the classifier re-decides)."""
        from peft import inject_adapter_in_model

        inject_adapter_in_model(self.config(), vit)

    def merge(self, vit: VisionTransformer) -> None:
        """``W += (alpha/r) B A`` (DoRA: ``W' = m / ||W + s B A||_row * (W + s B A)``), then plain ``nn.Linear``."""
        from peft.tuners.lora import LoraLayer

        for name, module in list(vit.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent_name, _, child = name.rpartition(".")
                setattr(vit.get_submodule(parent_name), child, module.get_base_layer())


class DoRA(LoRA):
    """DoRA: LoRA on the direction and a learned per-row magnitude ``m`` (``m`` starts at ``||W||_row``).

    peft computes ``m / ||W + s B A||_row * (W + s B A) x`` with the norm detached (paper §4.3). Defaults:
    peft's rank 8 with alpha = r, no dropout (peft's default), on all four linears of each block as the
    DoRA paper adapts every linear of its LLMs; no vision defaults are published.

    Args:
        r: rank.
        alpha: scale numerator (None: alpha = r).
        dropout: dropout on the LoRA input.
        targets: timm module names to adapt.
        layers: indices of the blocks to adapt; None for all.
    """

    name = "dora"
    label = "DoRA"
    use_dora = True

    def __init__(
        self,
        r: int = 8,
        alpha: float | None = None,
        dropout: float = 0.0,
        targets: Sequence[str] = SITES,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__(r, alpha, dropout, targets, layers)


class LoRABias(LoRA):
    """LoRA plus BitFit: the LoRA factors, every backbone bias and the head (peft's ``bias="all"``).

    Args:
        r: rank.
        alpha: scale numerator (None: alpha = r).
        dropout: dropout on the LoRA input.
        targets: timm module names to adapt.
        layers: indices of the blocks to adapt; None for all.
    """

    name = "lora_bias"
    label = "LoRA + Bias"
    mergeable = True

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """LoRA factors, backbone biases (the base layers' included) and head."""
        biases = {n for n in names if n.startswith("backbone.") and n.endswith(".bias")}
        return super().trainable_names(names, added) | biases
