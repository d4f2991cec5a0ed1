"""Text input for ImageBind: CLIP BPE token ids.

open_clip's ``SimpleTokenizer`` is the same BPE (the vocabulary file ships inside the open_clip wheel, so nothing is
downloaded) with the same cleaning (ftfy, double HTML unescape, whitespace collapse, lowercase) and the same ids
(SOT 49406, EOT 49407). Its truncation, ``([SOT] + tokens + [EOT])[:77]`` with the last id replaced by EOT, is
identical to the official HEAD's ``([SOT] + tokens)[:76] + [EOT]``. One difference is left as is: the official
tokenizer treats the literal strings ``<|startoftext|>``/``<|endoftext|>`` inside a text as special tokens, open_clip
treats ``<start_of_text>``/``<end_of_text>`` so.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType

import torch

from .errors import InputError

__all__ = ["CONTEXT_LENGTH", "EOT_TOKEN", "SOT_TOKEN", "check_texts", "load_text", "tokenizer"]

CONTEXT_LENGTH = 77
SOT_TOKEN = 49406
EOT_TOKEN = 49407


def _open_clip_tokenizer_module() -> ModuleType:
    """``open_clip.tokenizer``, loaded on its own when ``open_clip`` is not imported yet.

    ``import open_clip`` imports its whole model zoo (transformers included: over 10 s on a busy machine) although
    the tokenizer module only needs ftfy, regex, numpy and torch and has no package-relative imports.
    """
    if "open_clip.tokenizer" in sys.modules:
        return sys.modules["open_clip.tokenizer"]
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip_torch is required for ImageBind text inputs")
    path = f"{next(iter(spec.submodule_search_locations))}/tokenizer.py"
    name = "_lit_mm_open_clip_tokenizer"
    if name in sys.modules:
        return sys.modules[name]
    file_spec = importlib.util.spec_from_file_location(name, path)
    try:
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module
        file_spec.loader.exec_module(module)
    except (ImportError, OSError, AttributeError):
        sys.modules.pop(name, None)
        import open_clip.tokenizer as module
    return module


@lru_cache(maxsize=1)
def tokenizer() -> object:
    """The shared open_clip ``SimpleTokenizer`` (built once).

    Returns:
        ``open_clip.tokenizer.SimpleTokenizer`` with context length 77, vocabulary ``bpe_simple_vocab_16e6``.
    """
    tok = _open_clip_tokenizer_module().SimpleTokenizer(context_length=CONTEXT_LENGTH)
    if (tok.sot_token_id, tok.eot_token_id) != (SOT_TOKEN, EOT_TOKEN):  # pragma: no cover - guards a vocabulary change
        raise RuntimeError(f"unexpected CLIP special token ids {tok.sot_token_id}, {tok.eot_token_id}")
    return tok


def check_texts(texts: Sequence[str], what: str = "text") -> None:
    """Raises :class:`InputError` naming the first empty (or whitespace-only) text: ``text 3 of 5 is empty``.

    Args:
        texts: the texts.
        what: how the message calls one of them (``text``, ``label``).
    """
    for i, text in enumerate(texts):
        if not str(text).strip():
            raise InputError(
                f"{what} {i + 1} of {len(texts)} ({text!r}) is empty; ImageBind embeds words, and an empty text "
                "would give the embedding of the bare start and end tokens"
            )


def load_text(texts: Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Tokenise texts as the official ``load_and_transform_text`` at HEAD does.

    ``[SOT] + bpe(clean(text))`` cut to ``context_length - 1`` ids, then ``[EOT]``, zero-padded on the right, so the
    EOT id (whose position the text head reads through ``argmax``) is always present.

    Args:
        texts: The texts; a bare ``str`` is rejected to avoid tokenising its characters one by one.
        context_length: Sequence length; 77 for ImageBind.

    Returns:
        ``(B, context_length)`` int64 tensor.

    Raises:
        TypeError: ``texts`` is a string or contains a non-string.
        InputError: a text is empty or only whitespace (it would embed as the bare start and end tokens).
    """
    if isinstance(texts, str):
        raise TypeError("load_text expects a sequence of strings, got a single str; wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, str expected")
    check_texts(texts)
    if not texts:
        return torch.zeros(0, context_length, dtype=torch.long)
    return tokenizer()(texts, context_length=context_length)
