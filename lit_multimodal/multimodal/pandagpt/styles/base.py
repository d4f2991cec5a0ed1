r"""The prompt-style seam: how a conversation becomes text pieces, which are trained, and when generation stops.

A style renders a conversation as a list of :class:`Piece`: text (tokenized on its own with
``add_special_tokens=False``), literal ids (BOS/EOS), or the modality slot (``soft``) that the model fills with
the projected embedding. :class:`~lit_multimodal.multimodal.pandagpt.conversation.ConversationTokenizer` turns the
pieces into ids and labels; training, chat, the web demo and the server all go through the same style object.

Everything before the soft slot must be the same for every conversation of a style (it is the fixed prefix whose
length gives the soft token's position), and the soft slot sits in the first user turn. Pieces with
``trained=True`` carry labels (assistant replies and their end marker); all others are -100.

Add a style by writing one file with a :class:`PromptStyle` subclass decorated with :func:`register_style` and
importing it in ``styles/__init__.py`` (or pass its dotted class path as ``prompt_style``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "IMG_CLOSE",
    "IMG_OPEN",
    "Message",
    "Piece",
    "PromptStyle",
    "SpecialIds",
    "TemplateStyle",
    "register_style",
    "turns_to_messages",
]

IMG_OPEN = "<Img>"
IMG_CLOSE = "</Img>"
Message = tuple[str, str]  # (role: "system" | "user" | "assistant", content)

_REGISTRY: dict[str, type[PromptStyle]] = {}


@dataclass(frozen=True)
class Piece:
    """One part of a rendered conversation.

    Attributes:
        text: text tokenized on its own (``add_special_tokens=False``); empty when ``ids`` is used.
        ids: literal token ids (BOS, EOS).
        trained: the piece's tokens are labels (assistant reply and its end marker).
        soft: the modality slot (``n`` soft-token positions); ``text``/``ids`` are then empty.
    """

    text: str = ""
    ids: tuple[int, ...] = ()
    trained: bool = False
    soft: bool = False


@dataclass(frozen=True)
class SpecialIds:
    """Special ids a style may place literally: BOS (None for models without one) and EOS."""

    bos: int | None
    eos: int | None


def turns_to_messages(turns: Sequence[Mapping[str, str]]) -> list[Message]:
    """PandaGPT/LLaVA turns (``from`` human/gpt) as ``(role, content)`` messages."""
    return [("user" if turn["from"] == "human" else "assistant", turn["value"]) for turn in turns]


def history_to_messages(history: Sequence[tuple[str, str]], message: str) -> list[Message]:
    """``(question, answer)`` pairs and a new question as messages."""
    out: list[Message] = []
    for question, answer in history:
        out += [("user", question), ("assistant", answer)]
    return [*out, ("user", message)]


class PromptStyle:
    """A prompt format: rendering for training and generation, special tokens and the stop rule.

    Args:
        system: system prompt; None takes the style's default (``default_system``), ``""`` none at all.

    Class attributes:
        name: registry name (``--model.prompt_style``).
        default_system: system prompt used when none is given.
        uses_bos: the format starts with the tokenizer's BOS (False: models without one, e.g. Qwen2).
        stop_strings: generation stops when the answer text reaches one of these (the text before it is kept).
        stop_tokens: token strings that end generation besides the tokenizer's EOS (resolved to ids).
        required_tokens: token strings the vocabulary must hold as single tokens (chat markers).
        mask_from_pad_id: attention mask ``ids != pad`` on the text part (the official PandaGPT) instead of
            from the sequence lengths.
        has_system: the format has a system prompt (a request's system message is ignored otherwise).
    """

    name: ClassVar[str] = ""
    default_system: ClassVar[str | None] = None
    uses_bos: ClassVar[bool] = True
    stop_strings: ClassVar[tuple[str, ...]] = ()
    stop_tokens: ClassVar[tuple[str, ...]] = ()
    required_tokens: ClassVar[tuple[str, ...]] = ()
    mask_from_pad_id: ClassVar[bool] = False
    has_system: ClassVar[bool] = True

    def __init__(self, system: str | None = None) -> None:
        self.system = self.default_system if system is None else system
        self.tokenizer: Any = None

    def bind(self, tokenizer: Any) -> None:
        """Checks the tokenizer against the style (called once by the conversation tokenizer)."""
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        missing = [token for token in self.required_tokens if token not in vocab]
        if missing:
            raise ValueError(
                f"prompt style {self.name!r} needs the tokens {missing}, which this tokenizer does not have as "
                "single tokens; pick the style of this model family or prompt_style: chat_template"
            )

    def stop_ids(self, eos: int | None) -> set[int]:
        """Token ids that end generation: EOS and the style's ``stop_tokens`` present in the vocabulary."""
        vocab = self.tokenizer.get_vocab() if self.tokenizer is not None else {}
        ids = {vocab[token] for token in self.stop_tokens if token in vocab}
        return ids | ({eos} if eos is not None else set())

    def training_pieces(self, turns: Sequence[Mapping[str, str]], special: SpecialIds) -> list[Piece]:
        """The pieces of a training conversation (checked PandaGPT turns)."""
        return self.render(turns_to_messages(turns), special, generation=False)

    def generation_pieces(self, history: Sequence[tuple[str, str]], message: str, special: SpecialIds) -> list[Piece]:
        """The pieces of the prompt for answering ``message`` after ``history``, ending with the reply header."""
        return self.render(history_to_messages(history, message), special, generation=True)

    def render(self, messages: Sequence[Message], special: SpecialIds, generation: bool) -> list[Piece]:
        """Pieces of ``messages`` (user first); with ``generation`` the assistant header closes the prompt."""
        raise NotImplementedError


class TemplateStyle(PromptStyle):
    r"""A turn template written as strings: the common shape of chat formats.

    Subclasses set ``begin`` (before everything; ``{system}`` filled, only when there is a system prompt unless
    ``begin_without_system`` is given), ``user`` (a user turn, ``{content}``), ``assistant_header`` (between a
    user turn and the reply), ``assistant_end`` (appended to the reply text, trained), ``after_assistant``
    (untrained text after the end marker) and ``eos_after_reply`` (a literal EOS id after each reply, trained).
    ``bos_each_turn`` puts BOS before every user turn (LLaMA-2). The first user turn's content becomes
    ``{system_fused}<Img>`` [soft] ``</Img>\n{content}``; ``system_fused`` is ``system_fuse_format`` (default
    ``{system}\n\n``) for formats without a system role (``fuse_system``). Contents are stripped when ``strip_content``.
    """

    begin: ClassVar[str] = ""
    begin_without_system: ClassVar[str | None] = None
    user: ClassVar[str] = "{content}"
    assistant_header: ClassVar[str] = ""
    assistant_end: ClassVar[str] = ""
    after_assistant: ClassVar[str] = ""
    eos_after_reply: ClassVar[bool] = False
    bos_each_turn: ClassVar[bool] = False
    fuse_system: ClassVar[bool] = False
    strip_content: ClassVar[bool] = False
    system_fuse_format: ClassVar[str] = "{system}\n\n"
    image_suffix: ClassVar[str] = "\n"

    def render(self, messages: Sequence[Message], special: SpecialIds, generation: bool) -> list[Piece]:
        """Renders ``messages`` with the class's template strings, merging adjacent untrained text."""
        pieces: list[Piece] = []
        system = self.system or ""
        if messages and messages[0][0] == "system":
            system, messages = messages[0][1], messages[1:]
        if self.uses_bos and not self.bos_each_turn:
            pieces.append(Piece(ids=(_need(special.bos, "BOS"),)))
        if system and not self.fuse_system:
            pieces.append(Piece(self.begin.format(system=system)))
        elif self.begin_without_system is not None:
            pieces.append(Piece(self.begin_without_system))
        first = True
        for role, content in messages:
            content = content.strip() if self.strip_content else content
            if role == "user":
                if self.bos_each_turn and self.uses_bos:
                    pieces.append(Piece(ids=(_need(special.bos, "BOS"),)))
                if first:
                    fused = self.system_fuse_format.format(system=system) if system and self.fuse_system else ""
                    before, after = self.user.split("{content}")
                    pieces.append(Piece(before + fused + IMG_OPEN))
                    pieces.append(Piece(soft=True))
                    pieces.append(Piece(IMG_CLOSE + self.image_suffix + content + after + self.assistant_header))
                    first = False
                else:
                    pieces.append(Piece(self.user.format(content=content) + self.assistant_header))
            elif role == "assistant":
                pieces.append(Piece(content + self.assistant_end, trained=True))
                if self.eos_after_reply:
                    pieces.append(Piece(ids=(_need(special.eos, "EOS"),), trained=True))
                if self.after_assistant:
                    pieces.append(Piece(self.after_assistant))
            else:
                raise ValueError(f"prompt style {self.name!r}: unexpected role {role!r} after the first message")
        if first:
            raise ValueError("a conversation needs a user turn to carry the modality")
        if not generation and pieces and not pieces[-1].trained:
            # A trailing untrained tail (e.g. "\n" after <|im_end|>) adds nothing to training.
            pieces.pop()
        return merge_text(pieces)


def merge_text(pieces: list[Piece]) -> list[Piece]:
    """Joins neighbouring text pieces of the same ``trained`` kind (one tokenizer call each)."""
    out: list[Piece] = []
    for piece in pieces:
        if not piece.text and not piece.ids and not piece.soft:
            continue
        last = out[-1] if out else None
        if last is not None and piece.text and last.text and last.trained == piece.trained:
            out[-1] = Piece(last.text + piece.text, trained=piece.trained)
        else:
            out.append(piece)
    return out


def _need(value: int | None, what: str) -> int:
    if value is None:
        raise ValueError(f"this prompt style needs a {what} id but the tokenizer has none; set it explicitly")
    return int(value)


def register_style(cls: type[PromptStyle]) -> type[PromptStyle]:
    """Class decorator: makes a style available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def style_names() -> list[str]:
    """Registered style names."""
    return sorted(_REGISTRY)


def get_style(name: str | PromptStyle, system: str | None = None) -> PromptStyle:
    """A style instance by registry name or dotted class path (``pkg.module.MyStyle``).

    Args:
        name: a registered name (see :func:`style_names`), a dotted class path, or an instance (returned as is).
        system: system prompt override (None: the style's default).
    """
    if isinstance(name, PromptStyle):
        return name
    cls = _REGISTRY.get(name)
    if cls is None and "." in name:
        import importlib

        module, _, attr = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"prompt_style {name!r} cannot be imported: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, PromptStyle)):
            raise ValueError(f"prompt_style {name!r} is not a PromptStyle subclass")
    if cls is None:
        raise ValueError(f"unknown prompt_style {name!r}; expected one of {style_names()} or a dotted class path")
    return cls(system=system)
