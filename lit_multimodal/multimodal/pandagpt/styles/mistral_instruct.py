r"""Mistral-7B-Instruct v0.1/v0.2 (transformers' chat-templating docs).

``<s>[INST] {system}\n\n<Img>`` [soft] ``</Img>\n{u1} [/INST]{a1}</s> [INST] {u2} [/INST]``: BOS once, no system
role (a system text is fused into the first user turn), replies and their ``</s>`` trained; generation stops at
``</s>``. Replies are tokenized on their own, so SentencePiece starts them with "▁"; for the exact ids of a later
Mistral tokenizer (v3, tekken) use ``chat_template``.
"""

from __future__ import annotations

from lit_multimodal.multimodal.pandagpt.styles.base import TemplateStyle, register_style


@register_style
class MistralInstruct(TemplateStyle):
    """Mistral ``[INST]`` format."""

    name = "mistral_instruct"
    user = "[INST] {content} [/INST]"
    eos_after_reply = True
    after_assistant = " "
    fuse_system = True
