r"""Vicuna v1.1 / v1.5 (FastChat ``vicuna_v1.1``; LLaVA-1.5's ``v1`` layout).

``<s>{system} USER: <Img>`` [soft] ``</Img>\n{u1} ASSISTANT: {a1}</s>USER: {u2} ASSISTANT:``; each reply and its
``</s>`` are trained; generation stops at ``</s>``.
"""

from __future__ import annotations

from lit_multimodal.multimodal.pandagpt.styles.base import TemplateStyle, register_style


@register_style
class VicunaV11(TemplateStyle):
    """Vicuna v1.1 (also v1.3, v1.5)."""

    name = "vicuna_v1.1"
    default_system = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions."
    )
    begin = "{system} "
    user = "USER: {content}"
    assistant_header = " ASSISTANT:"
    eos_after_reply = True
