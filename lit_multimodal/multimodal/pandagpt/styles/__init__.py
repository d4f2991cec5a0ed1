"""Prompt styles for PandaGPT on different LLM families: one file per style, looked up by name.

``vicuna_v0`` (default, PandaGPT's official format), ``vicuna_v1.1``, ``llama2_chat``, ``llama3_instruct``,
``qwen2`` (ChatML), ``mistral_instruct`` and ``chat_template`` (the tokenizer's own template).
"""

from lit_multimodal.multimodal.pandagpt.styles import (  # noqa: F401 - registers the styles
    chat_template,
    llama2_chat,
    llama3_instruct,
    mistral_instruct,
    qwen2,
    vicuna_v0,
    vicuna_v1,
)
from lit_multimodal.multimodal.pandagpt.styles.base import (
    Piece,
    PromptStyle,
    SpecialIds,
    TemplateStyle,
    get_style,
    register_style,
    style_names,
)

__all__ = ["Piece", "PromptStyle", "SpecialIds", "TemplateStyle", "get_style", "register_style", "style_names"]
