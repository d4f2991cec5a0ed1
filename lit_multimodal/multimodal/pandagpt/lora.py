"""PandaGPT's LoRA: the official ``get_peft_model`` wrapping and the rule of which tensors train."""

from __future__ import annotations

from torch import nn

__all__ = ["apply_lora", "is_trainable_name"]


def is_trainable_name(name: str) -> bool:
    """Whether a parameter name belongs to the tuned set: LoRA matrices or the projection."""
    return name.startswith("llama_proj.") or ".lora_A." in name or ".lora_B." in name


def apply_lora(
    llm: nn.Module,
    r: int = 32,
    alpha: int = 32,
    dropout: float = 0.1,
    target_modules: tuple[str, ...] | list[str] | str = ("q_proj", "k_proj", "v_proj", "o_proj"),
) -> nn.Module:
    """Wraps a causal LM with peft LoRA as the official ``get_peft_model`` call (A kaiming, B zero, scale α/r)."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        inference_mode=False,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
    )
    return get_peft_model(llm, config)
