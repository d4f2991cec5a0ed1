r"""Qwen2 / Qwen2.5 ChatML (no BOS).

``<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<Img>`` [soft] ``</Img>\n{u1}<|im_end|>\n<|im_start|>
assistant\n{a1}<|im_end|>\n``...; replies and their ``<|im_end|>`` trained (the ``\n`` after it is not); no BOS
("should never be used", the Qwen maintainers); generation stops at ``<|im_end|>`` or ``<|endoftext|>``.
"""

from __future__ import annotations

from lit_multimodal.multimodal.pandagpt.styles.base import TemplateStyle, register_style


@register_style
class Qwen2ChatML(TemplateStyle):
    """Qwen2 ChatML (Qwen2.5's default system prompt differs: pass it as ``system_prompt``)."""

    name = "qwen2"
    default_system = "You are a helpful assistant."
    uses_bos = False
    begin = "<|im_start|>system\n{system}<|im_end|>\n"
    user = "<|im_start|>user\n{content}<|im_end|>\n"
    assistant_header = "<|im_start|>assistant\n"
    assistant_end = "<|im_end|>"
    after_assistant = "\n"
    stop_tokens = ("<|im_end|>", "<|endoftext|>")
    required_tokens = ("<|im_start|>", "<|im_end|>")
