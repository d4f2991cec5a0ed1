"""Loading PandaGPT's frozen base LLM: offline ``from_pretrained`` with its dtype, attention backend and QLoRA."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

__all__ = ["DTypeName", "load_base_llm"]

DTypeName = Literal["auto", "float32", "float16", "bfloat16"]


def _four_bit_kwargs() -> dict[str, Any]:
    """``from_pretrained`` arguments of the QLoRA recipe (NF4, double quantization, bf16 compute) on this GPU."""
    if not torch.cuda.is_available():
        raise ValueError("model.load_in_4bit needs a CUDA GPU (bitsandbytes NF4); leave it off on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError("model.load_in_4bit needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}


def _torch_dtype(name: str) -> torch.dtype | str:
    return "auto" if name == "auto" else getattr(torch, name)


def load_base_llm(
    path: str, dtype: DTypeName = "float32", attn_implementation: str | None = None, load_in_4bit: bool = False
) -> nn.Module:
    """The causal LM of a local folder, read offline, with the KV cache off for training.

    Args:
        path: the LLM folder (config and weights).
        dtype: dtype of the loaded weights.
        attn_implementation: transformers attention backend (None: the library's default).
        load_in_4bit: QLoRA: NF4 weights with double quantization and bf16 compute (needs a CUDA GPU).
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": _torch_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_4bit:
        kwargs.update(_four_bit_kwargs())
    llm = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    llm.config.use_cache = False
    return llm
