"""Where the framework keeps files it builds itself (quickstart data, quickstart backbone)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LIT_MM_CACHE`` if set, else ``~/.cache/lit_multimodal``."""
    return Path(os.environ.get("LIT_MM_CACHE", Path.home() / ".cache" / "lit_multimodal")).expanduser()
