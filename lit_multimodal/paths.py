"""Where the framework keeps files it builds itself (quickstart data, quickstart backbone), and their mode."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LIT_MM_CACHE`` if set, else ``~/.cache/lit_multimodal``."""
    return Path(os.environ.get("LIT_MM_CACHE", Path.home() / ".cache" / "lit_multimodal")).expanduser()


def make_shareable(path: str | os.PathLike[str]) -> None:
    """Gives a file the mode an ordinary ``open()`` would (``0o666`` less the umask).

    ``tempfile.mkstemp`` creates files readable by their owner only (0600); a cache file renamed from one would
    stay unreadable to the rest of a group sharing the cache folder.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
