"""Alias of :mod:`lit_multimodal.quickstart.tiny_llm`, the home of the tiny LLM folders (quickstart and tests)."""

from lit_multimodal.quickstart.tiny_llm import (  # noqa: F401
    TINY_TEXT,
    build_tiny_byte_level_tokenizer,
    build_tiny_tokenizer,
    write_tiny_causal_lm,
    write_tiny_llama,
)
