r"""LLaMA-3 / 3.1 instruct.

``<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>`` (only with a system prompt)
``<|start_header_id|>user<|end_header_id|>\n\n<Img>`` [soft] ``</Img>\n{u1}<|eot_id|><|start_header_id|>assistant
<|end_header_id|>\n\n{a1}<|eot_id|>``...; replies and their ``<|eot_id|>`` trained, contents stripped; generation
stops at ``<|eot_id|>`` or ``<|end_of_text|>``.
"""

from __future__ import annotations

from lit_multimodal.multimodal.pandagpt.styles.base import TemplateStyle, register_style


@register_style
class Llama3Instruct(TemplateStyle):
    """LLaMA-3 instruct header/``<|eot_id|>`` format."""

    name = "llama3_instruct"
    begin = "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
    user = "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
    assistant_header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assistant_end = "<|eot_id|>"
    strip_content = True
    stop_tokens = ("<|eot_id|>", "<|end_of_text|>")
    required_tokens = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
