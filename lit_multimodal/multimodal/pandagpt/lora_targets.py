"""LoRA target modules per causal-LM architecture (``config.model_type``), with an explicit override.

PandaGPT puts LoRA on the attention projections; the names differ per family (transformers modeling files):
LLaMA, Mistral, Qwen2/3, Gemma 1–3 and most newer decoders use ``q_proj``/``k_proj``/``v_proj``/``o_proj``;
Phi-3 fuses q, k and v into ``qkv_proj``; phi-2 calls the output ``dense``; GPT-NeoX and Falcon fuse into
``query_key_value``. peft's own default covers only ``q_proj``/``v_proj`` and has no Phi-3 entry, hence this table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ATTENTION_TARGETS", "resolve_lora_targets"]

_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
ATTENTION_TARGETS: dict[str, tuple[str, ...]] = {
    **{
        name: _QKVO
        for name in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "starcoder2",
            "olmo",
            "olmo2",
            "granite",
            "cohere",
            "smollm3",
        )
    },
    "phi3": ("qkv_proj", "o_proj"),
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "gpt_neox": ("query_key_value", "dense"),
    "falcon": ("query_key_value", "dense"),
}


def resolve_lora_targets(config: Any, override: Sequence[str] | str | None = None) -> list[str] | str:
    """LoRA ``target_modules`` for a transformers config.

    Args:
        config: the LLM's ``PretrainedConfig`` (its ``model_type`` picks the row).
        override: explicit module names (or ``"all-linear"``); wins over the table.

    Raises:
        ValueError: unknown architecture and no override, naming the ``model_type``.
    """
    if override:
        return override if isinstance(override, str) else list(override)
    model_type = getattr(config, "model_type", None)
    if model_type not in ATTENTION_TARGETS:
        raise ValueError(
            f"no LoRA target table entry for model_type {model_type!r}; set model.lora_target_modules "
            f"(e.g. [q_proj, v_proj] or all-linear); known: {sorted(ATTENTION_TARGETS)}"
        )
    return list(ATTENTION_TARGETS[model_type])
