"""What a file really holds, from its first bytes, for error messages about files with a misleading suffix.

``numpy.load`` calls everything that is neither a zip archive nor an ``.npy`` array "pickled data"; a text file,
an HTML error page saved under a weights name or an empty download deserve their real name.
"""

from __future__ import annotations

import os

__all__ = ["describe_content", "npy_problem"]

_PICKLE_PROTOCOLS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))


def describe_content(path: str | os.PathLike[str]) -> str:
    """A short description of the file's content, read from its first bytes.

    One of ``a zip archive``, ``an .npy array``, ``a pickle``, ``an empty file``, ``a text file (starts with
    '...')``, ``an HDF5 file`` or ``binary data``.

    Args:
        path: the file.

    Returns:
        The description (``a missing file`` or ``an unreadable file`` when it cannot be opened).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except FileNotFoundError:
        return "a missing file"
    except OSError:
        return "an unreadable file"
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "an .npy array"
    if head.startswith(_PICKLE_PROTOCOLS):
        return "a pickle"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the 512-byte boundary
            return "binary data"
        text = head[: err.start].decode("utf-8")
    if all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"a text file (starts with {first!r})"
    return "binary data"


def npy_problem(path: str | os.PathLike[str], err: Exception) -> str:
    """Why ``numpy.load`` failed on a ``.npy`` file: its own message, unless the file is not an array at all."""
    kind = describe_content(path)
    if kind in ("an .npy array", "a zip archive", "a pickle"):
        return str(err)
    return f"the file is {kind}"
