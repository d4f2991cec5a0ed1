"""Errors for bad input, for settings a run cannot use and for training that diverged.

:class:`DataError` is the base: ``lit-mm`` reports each of them as one ``error:`` line (exit status 1) instead of
a traceback. It lives here, below ``data/`` and the model folders, so that every layer can raise it.
"""

from __future__ import annotations

__all__ = ["DataError", "SettingError", "TrainingDiverged", "check_setting"]


class DataError(ValueError):
    """Bad dataset input: the message names the file (and line or key) at fault."""


class SettingError(DataError):
    """A setting with a value the run cannot use (an unknown backbone, zero prompts, a negative learning rate).

    The message names the key, the value given and what is expected.
    """


class TrainingDiverged(SettingError, FloatingPointError):
    """The training loss became NaN or infinite; the run stops (the message says where and what to try)."""


def check_setting(ok: bool, key: str, value: object, expected: str) -> None:
    """Raises :class:`SettingError` ``"<key> is <value>; expected <expected>"`` unless ``ok``."""
    if not ok:
        raise SettingError(f"{key} is {value!r}; expected {expected}")
