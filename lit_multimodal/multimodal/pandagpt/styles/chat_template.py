r"""The tokenizer's own chat template (``tokenizer.chat_template``, rendered by ``apply_chat_template``).

The conversation is rendered as text with the template; the first user content is ``<Img>`` + a sentinel +
``</Img>\n{u1}``, and the sentinel becomes the soft slot. Labels are assistant-only without needing the
template's ``{% generation %}`` markers: for the k-th assistant message the text rendered through it minus the
text rendered up to its generation prompt is the reply with its end-of-turn marker (trained); trailing
whitespace after the marker is not trained. A template whose renderings are not prefixes of each other (e.g. one
that rewrites earlier turns) is refused with a clear error. Generation stops at EOS and at the usual end-of-turn
tokens the vocabulary has (``<|im_end|>``, ``<|eot_id|>``, ``<|end|>``, ``<end_of_turn>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lit_multimodal.multimodal.pandagpt.styles.base import (
    IMG_CLOSE,
    IMG_OPEN,
    Message,
    Piece,
    PromptStyle,
    SpecialIds,
    merge_text,
    register_style,
)

SENTINEL = "\u2063PANDAGPT_SOFT\u2063"


@register_style
class ChatTemplate(PromptStyle):
    """Whatever chat format the tokenizer folder declares (``chat_template`` in ``tokenizer_config.json``)."""

    name = "chat_template"
    uses_bos = False  # the template writes BOS itself when the model needs one
    stop_tokens = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")

    def bind(self, tokenizer: Any) -> None:
        """Requires a chat template on the tokenizer."""
        super().bind(tokenizer)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "prompt_style chat_template: this tokenizer has no chat_template (tokenizer_config.json or "
                "chat_template.jinja); pick a named style such as vicuna_v1.1, llama3_instruct or qwen2"
            )

    def _apply(self, messages: list[dict[str, str]], generation: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def render(self, messages: Sequence[Message], special: SpecialIds, generation: bool) -> list[Piece]:
        """Renders with the template and cuts the text into untrained, trained and soft pieces."""
        if self.tokenizer is None:
            raise RuntimeError("chat_template style used before bind(tokenizer)")
        chat: list[dict[str, str]] = []
        if self.system and not (messages and messages[0][0] == "system"):
            chat.append({"role": "system", "content": self.system})
        first = True
        for role, content in messages:
            if role == "user" and first:
                content = f"{IMG_OPEN}{SENTINEL}{IMG_CLOSE}\n{content}"
                first = False
            chat.append({"role": role, "content": content})
        chunks: list[tuple[str, bool]] = []
        done = ""
        for index, message in enumerate(chat):
            if message["role"] != "assistant":
                continue
            before = self._apply(chat[:index], generation=True)
            through = self._apply(chat[: index + 1], generation=False)
            if not before.startswith(done) or not through.startswith(before):
                raise ValueError(
                    "prompt_style chat_template: this template renders earlier turns differently once later ones "
                    f"are added (message {index}); labels cannot be cut from it, use a named style"
                )
            reply = through[len(before) :]
            body = reply.rstrip()
            chunks += [(before[len(done) :], False), (body, True), (reply[len(body) :], False)]
            done = through
        final = self._apply(chat, generation=generation)
        if not final.startswith(done):
            raise ValueError("prompt_style chat_template: the full rendering does not extend the per-turn renderings")
        if generation:
            chunks.append((final[len(done) :], False))
        else:
            while chunks and not chunks[-1][1]:  # whitespace after the last end marker trains nothing
                chunks.pop()
        pieces: list[Piece] = []
        for text, trained in chunks:
            if not trained and SENTINEL in text:
                head, tail = text.split(SENTINEL, 1)
                pieces += [Piece(head), Piece(soft=True), Piece(tail)]
            else:
                pieces.append(Piece(text, trained=trained))
        if not any(piece.soft for piece in pieces):
            raise ValueError("prompt_style chat_template: the template dropped the user content with the modality")
        return merge_text(pieces)
