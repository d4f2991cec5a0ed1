r"""Vicuna v0 as PandaGPT trains it (the default; token for token the official layout).

``<s>### Human: <Img>`` [soft] ``</Img> {q1}\n### Assistant: {a1}\n### Human: {q2}\n### Assistant: {a2}\n###``;
every turn tokenized on its own, replies trained with their trailing ``\n###``, no EOS; generation stops at ``###``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lit_multimodal.multimodal.pandagpt.styles.base import Piece, PromptStyle, SpecialIds, _need, register_style

PROMPT_START = "### Human: <Img>"


@register_style
class VicunaV0(PromptStyle):
    """PandaGPT's Vicuna-v0 format (no system prompt; stop on ``###``)."""

    name = "vicuna_v0"
    stop_strings = ("###",)
    mask_from_pad_id = True
    has_system = False

    def training_pieces(self, turns: Sequence[Mapping[str, str]], special: SpecialIds) -> list[Piece]:
        """BOS, ``### Human: <Img>``, the soft slot, then the official per-turn segments."""
        from lit_multimodal.multimodal.pandagpt.conversation import segments

        head = [Piece(ids=(_need(special.bos, "BOS"),)), Piece(PROMPT_START), Piece(soft=True)]
        return head + [Piece(text, trained=trained) for text, trained in segments(turns)]

    def generation_pieces(self, history: Sequence[tuple[str, str]], message: str, special: SpecialIds) -> list[Piece]:
        """The official demo prompt: the text after the soft token tokenized in one piece."""
        from lit_multimodal.multimodal.pandagpt.conversation import inference_text

        head = [Piece(ids=(_need(special.bos, "BOS"),)), Piece(PROMPT_START), Piece(soft=True)]
        return [*head, Piece(inference_text(history, message))]
