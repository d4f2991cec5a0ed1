"""The pieces of the chat engine's token loop: the cache keyword, clean UTF-8 text, stop strings, the next token.

The loop streams text as it is decoded and holds back the start of a stop string, so ``###`` never reaches the
screen even for a moment.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["Detokenizer", "cache_keyword", "hold_back_stop_prefix", "pick_token"]


def cache_keyword(llm: torch.nn.Module) -> str:
    """The name of the key/value cache in the LLM's forward and output: ``cache`` or ``past_key_values``.

    Recent transformers renamed ``past_key_values`` to ``cache`` and warn on the old name (in the middle of a
    streamed answer); older releases know only ``past_key_values``. A PEFT wrapper forwards ``**kwargs``, so the
    signature is read from the model it wraps.
    """
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class Detokenizer:
    """Incremental decoding that never yields bytes which are not valid UTF-8.

    A character spelled as several byte tokens decodes to U+FFFD until its last byte arrives: it is held back
    until it completes. Decoding restarts after each emitted window (as vLLM's detokenizer), so an orphan byte
    cannot spoil a neighbouring complete character; bytes that never form a character are dropped.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def add(self, token: int) -> str:
        """Adds a token; returns the clean text so far."""
        self.tokens.append(token)
        before = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        now = self._decode(self.tokens[self.prefix_offset :])
        if not now.startswith(before):
            # The new bytes merged with the window's into one invalid run (every byte then decodes to U+FFFD):
            # decode the new tokens on their own.
            before, now = "", self._decode(self.tokens[self.read_offset :])
        complete = len(now) > len(before) and not now.endswith("\ufffd")
        if complete or len(self.tokens) - self.read_offset > 4:  # no character spans more than 4 byte tokens
            self.text += now[len(before) :].replace("\ufffd", "")
            self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)
        return self.text


def hold_back_stop_prefix(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` without a trailing start of a stop string (``#`` or ``##`` of ``###``)."""
    for stop in stop_strings:
        for size in range(len(stop) - 1, 0, -1):
            if text.endswith(stop[:size]):
                return text[: len(text) - size]
    return text


def pick_token(
    logits: torch.Tensor, do_sample: bool, top_p: float, temperature: float, generator: torch.Generator
) -> int:
    """Greedy, or temperature then nucleus sampling (transformers' ``TopPLogitsWarper`` rule)."""
    if not do_sample:
        return int(logits.argmax())
    scores = logits / temperature
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[-1] = False  # keep at least the most likely token
    scores = scores.scatter(0, order, sorted_scores.masked_fill(remove, float("-inf")))
    return int(torch.multinomial(scores.softmax(dim=-1), 1, generator=generator))
