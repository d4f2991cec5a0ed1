r"""PandaGPT conversations → token ids and targets, exactly as the official ``build_one_instance``.

Layout of one training sequence (the official ``prompt_wrap`` over ``process_batch_instance``)::

    <s> ### Human: <Img> [IMG] </Img> {q1}\n### Assistant: {a1}\n### Human: {q2}\n### Assistant: {a2}\n###
    |-- 1 + 6 + 1 prefix, -100 --|-------------- text part: human turns -100, replies trained --------------|

- Every turn is tokenized on its own (``add_special_tokens=False``), so each segment gets SentencePiece's
  leading "▁".
- The first human turn is ``"</Img> " + value + "\n### Assistant:"``; later human turns are ``"Human: " + value
  + "\n### Assistant:"`` (no "### ": the previous reply ended with it); replies are ``value + "\n###"`` and are
  trained including that trailing ``"\n###"``. No EOS is inserted anywhere.
- The text parts are right-padded with the PAD id (targets with -100), then cut to ``max_tgt_len``: the cut
  applies to the text part only, so sequences are at most ``1 + len(prefix) + 1 + max_tgt_len`` long.
- The attention mask is 1 on the prefix and ``text_ids != pad_id`` on the text, as the official.

:class:`ConversationTokenizer` returns full-length ``input_ids`` with a placeholder at the image slot; the model
replaces the embedding at :attr:`ConversationTokenizer.image_position` by the projected modality embedding,
which is the same sequence as the official concatenation ``[bos, prefix, image, text]``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.nn.utils import rnn

from lit_multimodal.errors import UserError

__all__ = [
    "IGNORE_INDEX",
    "PROMPT_START",
    "ROLES",
    "ConversationError",
    "ConversationTokenizer",
    "build_one_instance",
    "check_conversation",
    "inference_prompt",
    "inference_text",
    "resolve_special_ids",
    "segments",
]

IGNORE_INDEX = -100
PROMPT_START = "### Human: <Img>"
ROLES = ("human", "gpt")


class ConversationError(UserError):
    """A conversation that PandaGPT cannot train on; the message says which turn and why."""


def check_conversation(turns: Any) -> None:
    """Raises :class:`ConversationError` unless ``turns`` is a trainable PandaGPT conversation.

    A trainable conversation is a non-empty list of ``{"from": "human" | "gpt", "value": str}`` whose first
    turn is ``human`` (the official asserts this) and that has at least one non-empty ``gpt`` reply.

    Args:
        turns: the conversation as read from the json.
    """
    if not isinstance(turns, Sequence) or isinstance(turns, str) or not turns:
        raise ConversationError("conversation is empty or not a list of turns")
    replies = 0
    for index, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise ConversationError(f"turn {index} is not a {{'from': ..., 'value': ...}} mapping")
        role, value = turn["from"], turn["value"]
        if role not in ROLES:
            raise ConversationError(f"turn {index} has unknown role {role!r} (expected one of {ROLES})")
        if index == 0 and role != "human":
            raise ConversationError(f"first turn is {role!r}, not 'human'")
        if not isinstance(value, str):
            raise ConversationError(f"turn {index} value is {type(value).__name__}, not a string")
        if role == "gpt":
            if not value.strip():
                raise ConversationError(f"turn {index} is an empty 'gpt' reply")
            replies += 1
    if replies == 0:
        raise ConversationError("conversation has no 'gpt' reply to train on")


def segments(turns: Sequence[Mapping[str, str]]) -> list[tuple[str, bool]]:
    """The official per-turn texts and whether each is trained.

    Args:
        turns: a conversation (checked with :func:`check_conversation`).

    Returns:
        ``(text, trained)`` per turn.
    """
    check_conversation(turns)
    out = []
    for index, turn in enumerate(turns):
        if index == 0:
            out.append(("</Img> " + turn["value"] + "\n### Assistant:", False))
        elif turn["from"] == "human":
            out.append(("Human: " + turn["value"] + "\n### Assistant:", False))
        else:
            out.append((turn["value"] + "\n###", True))
    return out


def build_one_instance(tokenizer: Any, turns: Sequence[Mapping[str, str]]) -> tuple[list[int], list[int]]:
    """Text-part ids and targets of one conversation (the official ``build_one_instance``).

    Args:
        tokenizer: a Hugging Face tokenizer.
        turns: the conversation.

    Returns:
        ``(input_ids, target_ids)`` of equal length; human segments have target -100.
    """
    input_ids: list[int] = []
    target_ids: list[int] = []
    for text, trained in segments(turns):
        ids = list(tokenizer(text, add_special_tokens=False).input_ids)
        input_ids += ids
        target_ids += ids if trained else [IGNORE_INDEX] * len(ids)
    return input_ids, target_ids


def resolve_special_ids(
    tokenizer: Any, bos_token_id: int | None, pad_token_id: int | None, need_bos: bool = True
) -> tuple[int | None, int]:
    """BOS and PAD ids: the given ones, else the tokenizer's BOS and EOS (the official sets ``pad = eos``).

    Old LLaMA/Vicuna-v0 conversions resolve both to 0 (``<unk>``); pin them explicitly to reproduce a given
    checkpoint's loss. Models without EOS pad with the tokenizer's PAD; models without BOS (Qwen2) get None
    when the prompt style does not need one.

    Args:
        tokenizer: a Hugging Face tokenizer.
        bos_token_id: explicit BOS id, or None for the tokenizer's.
        pad_token_id: explicit PAD id, or None for the tokenizer's EOS id (else its PAD id).
        need_bos: the prompt style places a BOS.
    """
    bos = tokenizer.bos_token_id if bos_token_id is None else bos_token_id
    pad = pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    if (need_bos and bos is None) or pad is None:
        raise ValueError(
            f"the tokenizer defines no BOS/EOS id (bos {tokenizer.bos_token_id}, eos {tokenizer.eos_token_id}); "
            "set bos_token_id and pad_token_id explicitly, or use a prompt_style without BOS (e.g. qwen2)"
        )
    return (None if bos is None else int(bos)), int(pad)


class ConversationTokenizer:
    """Turns a batch of conversations into PandaGPT's padded ids, targets and attention mask.

    The prompt format comes from a prompt style (:mod:`~lit_multimodal.multimodal.pandagpt.styles`); the default
    ``vicuna_v0`` is the official layout described above. Everything up to and including the soft slot is the
    fixed prefix; ``max_tgt_len`` cuts only the text after it, so the soft token(s) can never be cut off.

    Args:
        tokenizer: a Hugging Face tokenizer (the LLM's).
        max_tgt_len: cut of the text part (after the prefix positions); 1024 for the official 7B, 400 for 13B.
        bos_token_id: BOS id; None takes the tokenizer's.
        pad_token_id: PAD id; None takes the tokenizer's EOS id (the official ``pad_token = eos_token``).
        prompt_style: style name (``vicuna_v0``, ``vicuna_v1.1``, ``llama2_chat``, ``llama3_instruct``, ``qwen2``,
            ``mistral_instruct``, ``chat_template``), a dotted class path or a style instance.
        soft_tokens: positions of the modality slot (the projector's tokens per modality).
        system_prompt: system prompt for styles that have one (None: the style's default).
    """

    def __init__(
        self,
        tokenizer: Any,
        max_tgt_len: int = 1024,
        bos_token_id: int | None = None,
        pad_token_id: int | None = None,
        prompt_style: Any = "vicuna_v0",
        soft_tokens: int = 1,
        system_prompt: str | None = None,
    ) -> None:
        from lit_multimodal.multimodal.pandagpt.styles import SpecialIds, get_style

        if max_tgt_len < 1:
            raise ValueError(f"max_tgt_len must be positive, got {max_tgt_len}")
        if soft_tokens < 1:
            raise ValueError(f"soft_tokens must be positive, got {soft_tokens}")
        self.tokenizer = tokenizer
        self.max_tgt_len = max_tgt_len
        self.soft_tokens = soft_tokens
        self.style = get_style(prompt_style, system_prompt)
        self.style.bind(tokenizer)
        self.bos_token_id, self.pad_token_id = resolve_special_ids(
            tokenizer, bos_token_id, pad_token_id, need_bos=self.style.uses_bos
        )
        self.special = SpecialIds(self.bos_token_id, tokenizer.eos_token_id)
        self.stop_ids = self.style.stop_ids(tokenizer.eos_token_id)
        self.stop_strings = tuple(self.style.stop_strings)
        probe = [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]
        self.prompt_start_ids = self._tokenize(self.style.training_pieces(probe, self.special))[0]
        self.close_marker = "</Img>"

    # -- pieces → ids -----------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids) if text else []

    def _tokenize(self, pieces: Sequence[Any]) -> tuple[list[int], list[int], list[int]]:
        """``(ids before the soft slot, text ids after it, their targets)``."""
        before: list[int] = []
        text: list[int] = []
        targets: list[int] = []
        seen_soft = False
        for piece in pieces:
            if piece.soft:
                if seen_soft:
                    raise ConversationError(f"prompt style {self.style.name!r} rendered two modality slots")
                seen_soft = True
                continue
            ids = list(piece.ids) if piece.ids else self._ids(piece.text)
            if not seen_soft:
                if piece.trained:
                    raise ConversationError(f"prompt style {self.style.name!r} trains tokens before the modality")
                before += ids
            else:
                text += ids
                targets += ids if piece.trained else [IGNORE_INDEX] * len(ids)
        if not seen_soft:
            raise ConversationError(f"prompt style {self.style.name!r} rendered no modality slot")
        return before, text, targets

    def encode(self, turns: Sequence[Mapping[str, str]]) -> tuple[list[int], list[int]]:
        """Text-part ids and targets of one conversation (after the soft slot), uncut."""
        check_conversation(turns)
        before, text, targets = self._tokenize(self.style.training_pieces(turns, self.special))
        if before != self.prompt_start_ids:
            raise ConversationError(
                f"prompt style {self.style.name!r} renders different text before the modality slot per conversation"
            )
        return text, targets

    def protected_length(self, text_ids: Sequence[int]) -> int:
        """Leading text tokens that belong to the modality span (up to the ``</Img>`` marker); 0 if none."""
        for count in range(1, min(len(text_ids), 16) + 1):
            if self.close_marker in self.tokenizer.decode(list(text_ids[:count])):
                return count
        return 0

    def overflow_reason(self, turns: Sequence[Mapping[str, str]]) -> str | None:
        """Why a conversation cannot be trained within ``max_tgt_len`` (None when it can).

        It cannot when the cut would land inside the modality span (before the ``</Img>`` marker closing the
        soft token) or leave no trained token. A cut after that only drops later text, as the official.
        """
        if self._upper_bound(turns) <= self.max_tgt_len:
            return None  # fits for sure, without tokenizing (cheap on large datasets)
        text, targets = self.encode(turns)
        if len(text) <= self.max_tgt_len:
            return None
        if self.protected_length(text) > self.max_tgt_len:
            return f"max_tgt_len {self.max_tgt_len} would cut inside the modality span"
        # Targets are shifted by one in the loss, but a target at position 0 of the text part is predicted from
        # the soft token, so a label inside the cut counts.
        if all(t == IGNORE_INDEX for t in targets[: self.max_tgt_len]):
            return f"no reply token within max_tgt_len {self.max_tgt_len} ({len(text)} text tokens)"
        return None

    def _upper_bound(self, turns: Sequence[Mapping[str, str]]) -> int:
        """Most text-part tokens a conversation can take.

        Each token covers at least one UTF-8 byte, plus one word-start marker per separately tokenized piece.
        """
        pieces = self.style.training_pieces(turns, self.special)
        after = pieces[[p.soft for p in pieces].index(True) + 1 :] if any(p.soft for p in pieces) else pieces
        return sum(len(p.ids) if p.ids else len(p.text.encode("utf-8")) + 1 for p in after)

    # -- layout -----------------------------------------------------------------------------------
    @property
    def image_position(self) -> int:
        """Index of the first soft token in the full sequence (after BOS and e.g. ``### Human: <Img>``)."""
        return len(self.prompt_start_ids)

    @property
    def prefix_length(self) -> int:
        """Positions before the text part: everything up to and including the soft slot."""
        return self.image_position + self.soft_tokens

    def prefix_ids(self) -> list[int]:
        """The ids before the soft slot plus one placeholder (PAD id, never embedded) per soft token."""
        return [*self.prompt_start_ids, *[self.pad_token_id] * self.soft_tokens]

    def text_part(self, conversations: Sequence[Sequence[Mapping[str, str]]]) -> tuple[torch.Tensor, ...]:
        """The official ``process_batch_instance``: pad, cut to ``max_tgt_len``, mask.

        The mask is ``ids != pad`` for styles that ask for it (the official ``vicuna_v0``), otherwise it follows the
        sequence lengths (so an EOS equal to PAD inside a sequence stays visible).

        Returns:
            ``(input_ids, target_ids, attention_mask)``, each ``(B, min(longest, max_tgt_len))`` long.
        """
        pairs = [self.encode(turns) for turns in conversations]
        input_ids = rnn.pad_sequence(
            [torch.tensor(ids, dtype=torch.long) for ids, _ in pairs], batch_first=True, padding_value=self.pad_token_id
        )
        target_ids = rnn.pad_sequence(
            [torch.tensor(t, dtype=torch.long) for _, t in pairs], batch_first=True, padding_value=IGNORE_INDEX
        )
        input_ids = input_ids[:, : self.max_tgt_len]
        target_ids = target_ids[:, : self.max_tgt_len]
        if self.style.mask_from_pad_id:
            mask = input_ids.ne(self.pad_token_id).long()
        else:
            lengths = torch.tensor([len(ids) for ids, _ in pairs]).clamp(max=input_ids.shape[1])
            mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        return input_ids, target_ids, mask

    def __call__(self, conversations: Sequence[Sequence[Mapping[str, str]]]) -> dict[str, torch.Tensor | int]:
        """Full sequences with the prefix.

        Returns:
            ``input_ids``, ``target_ids``, ``attention_mask`` (``(B, prefix_length + text length)``) and
            ``image_position``.
        """
        text_ids, text_targets, text_mask = self.text_part(conversations)
        batch = text_ids.shape[0]
        prefix = torch.tensor(self.prefix_ids(), dtype=torch.long).expand(batch, -1)
        return {
            "input_ids": torch.cat([prefix, text_ids], dim=1),
            "target_ids": torch.cat([torch.full_like(prefix, IGNORE_INDEX), text_targets], dim=1),
            "attention_mask": torch.cat([torch.ones_like(prefix), text_mask], dim=1),
            "image_position": self.image_position,
        }

    def inference_ids(
        self, history: Sequence[tuple[str, str]], message: str, system: str | None = None
    ) -> dict[str, torch.Tensor | int]:
        """Prompt ids for generation (the official ``prepare_generation_embedding``), batch of one.

        For ``vicuna_v0`` the text part is tokenized as one string here, unlike training (as the official demo).

        Args:
            history: earlier ``(question, answer)`` pairs.
            message: the new user message.
            system: a system prompt replacing the style's (ignored by styles without one, e.g. ``vicuna_v0``).
        """
        style = self.style
        if system is not None and style.has_system and system != style.system:
            style = copy.copy(style)
            style.system = system
        before, text, _ = self._tokenize(style.generation_pieces(history, message, self.special))
        if style is self.style and before != self.prompt_start_ids:
            raise ConversationError(f"prompt style {self.style.name!r}: generation prefix differs from training")
        ids = torch.tensor([[*before, *[self.pad_token_id] * self.soft_tokens, *text]], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "image_position": len(before)}


def inference_prompt(history: Sequence[tuple[str, str]], message: str) -> str:
    r"""The official web demo's ``prompt_text`` for a new ``message`` after ``history``.

    The first pair is ``"{q}\n### Assistant: {a}\n###"``, later ones ``" Human: {q}\n### Assistant: {a}\n###"``;
    the new message is appended bare when there is no history and as ``" Human: {message}"`` otherwise.

    Args:
        history: earlier ``(question, answer)`` pairs.
        message: the new user message.
    """
    text = ""
    for index, (question, answer) in enumerate(history):
        lead = "" if index == 0 else " Human: "
        text += f"{lead}{question}\n### Assistant: {answer}\n###"
    return text + (message if not history else f" Human: {message}")


def inference_text(history: Sequence[tuple[str, str]], message: str) -> str:
    r"""The text after the image token at inference: ``"</Img> " + prompt + "\n### Assistant:"``."""
    return "</Img> " + inference_prompt(history, message) + "\n### Assistant:"
