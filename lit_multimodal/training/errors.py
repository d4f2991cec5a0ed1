"""Errors for settings a run cannot use and for training that diverged.

Both derive from :class:`~lit_multimodal.errors.DataError`, a :class:`~lit_multimodal.errors.UserError`, so
``lit-mm`` reports them as one ``error:`` line (exit status 1) like every other bad input, instead of a traceback.
"""

from __future__ import annotations

from lit_multimodal.errors import DataError

__all__ = ["DataError", "SettingError", "TrainingDiverged", "check_setting"]


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
