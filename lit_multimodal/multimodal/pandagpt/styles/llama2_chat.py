r"""LLaMA-2-chat (Meta's reference layout).

``<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n<Img>`` [soft] ``</Img>\n{u1} [/INST] {a1} </s><s>[INST] {u2} [/INST]``:
BOS before every ``[INST]``, contents stripped, each reply (with the space before ``</s>``) and its ``</s>``
trained; no default system prompt; generation stops at ``</s>``.
"""

from __future__ import annotations

from lit_multimodal.multimodal.pandagpt.styles.base import TemplateStyle, register_style


@register_style
class Llama2Chat(TemplateStyle):
    """LLaMA-2-chat ``[INST]`` format."""

    name = "llama2_chat"
    user = "[INST] {content} [/INST]"
    assistant_end = " "
    eos_after_reply = True
    bos_each_turn = True
    fuse_system = True
    system_fuse_format = "<<SYS>>\n{system}\n<</SYS>>\n\n"
    strip_content = True
