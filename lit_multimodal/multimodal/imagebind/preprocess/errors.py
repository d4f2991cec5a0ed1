"""The error raised by the ImageBind input loaders."""

from __future__ import annotations

import os

from lit_multimodal.errors import UserError

__all__ = ["InputError", "describe_path"]


class InputError(UserError):
    """An input file that cannot be turned into an ImageBind input tensor.

    Every message starts with the offending file and says what was found and what was expected, e.g.
    ``"clips/a.wav: audio has 0.010 s, at least 0.025 s (one 25 ms fbank frame) expected"``.
    """


def describe_path(path: str | os.PathLike[str]) -> str:
    """The file name as it appears at the start of an :class:`InputError` message.

    Args:
        path: The input file.

    Returns:
        ``os.fspath(path)``.
    """
    return os.fspath(path)
