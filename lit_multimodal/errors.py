"""Bad-input errors: one base class, :class:`UserError`, that ``lit-mm`` turns into a one-line ``error:`` message.

Every error the framework raises for input a user can fix (a missing data file, a checkpoint that does not fit,
a sweep file with an empty grid, an unreadable audio clip) derives from :class:`UserError`; the command line
catches that one class (see :mod:`lit_multimodal.cli`) and prints ``error: <message>`` with exit status 1 instead
of a traceback. The classes stay :class:`ValueError` subclasses, so ``except ValueError`` keeps catching them.

The family-specific classes live next to the code that raises them (``DataError`` is re-exported from
:mod:`lit_multimodal.data.base`, ``InputError`` from the ImageBind loaders, ...); the ones raised in more than
one part of the package are defined here, so that no part imports another only for an error class.

This module imports nothing from the package and nothing heavy.
"""

from __future__ import annotations

__all__ = ["USER_ERRORS", "CheckpointError", "DataError", "UserError", "error_message", "find_user_error"]


class UserError(ValueError):
    """Input the user can fix; ``str()`` is the one line ``lit-mm`` prints (``file:line: key: message``).

    Args:
        message: what is wrong and, where it helps, what is expected.
        file: the file at fault (a config, a data list, a checkpoint), if any.
        key: the config key or field at fault, if any.
        line: the line of ``file`` at fault, if known.

    Each of ``file``, ``line`` and ``key`` is printed only when given, so ``UserError("no tasks given")`` reads
    ``no tasks given`` and ``UserError("expected an integer", file="a.yaml", line=3, key="data.batch_size")``
    reads ``a.yaml:3: data.batch_size: expected an integer``.
    """

    def __init__(
        self, message: str = "", *, file: str | None = None, key: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = None if file is None else str(file)
        self.key = key
        self.line = line

    def __str__(self) -> str:
        text = super().__str__()
        where = []
        if self.file is not None:
            where.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.key is not None:
            where.append(self.key)
        return ": ".join([*where, text]) if where else text


class DataError(UserError):
    """A dataset that cannot be read or does not match the config; the message names the path or the key."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded; the message names the file and the tensors at fault."""


# What the command line prints as one line: the base class, and a missing file named by the standard library.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def find_user_error(err: BaseException | None) -> BaseException | None:
    """The framework's bad-input error behind ``err`` (a :class:`UserError` or ``FileNotFoundError``), or None.

    jsonargparse wraps errors raised while it instantiates classes; the cause chain still holds ours.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, USER_ERRORS):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def error_message(err: BaseException) -> str:
    """The message of an error; for one re-raised from a DataLoader worker, without the worker's traceback.

    PyTorch re-raises a worker's exception as the same type with the message ``Caught <type> in DataLoader worker
    process N.`` followed by the worker's traceback; the original message is in the traceback's last entry.
    """
    text = str(err)
    lines = text.splitlines()
    if not (text.startswith("Caught ") and len(lines) > 2 and lines[1].startswith("Original Traceback")):
        return text
    for index in range(2, len(lines)):
        if lines[index] and not lines[index].startswith(" "):  # "package.module.Type: message"
            original = "\n".join(lines[index:])
            return original.split(": ", 1)[1] if ": " in lines[index] else original
    return text
