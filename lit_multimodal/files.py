"""Atomic file writers: a file is either absent, its previous version, or complete, never half-written.

Each writer fills a temporary file next to the target and renames it over the target with ``os.replace`` (atomic
on POSIX within one folder), so a run killed mid-write, or a second process reading at the same moment, never
sees a truncated file. The file gets the mode an ordinary ``open()`` gives, whatever wrote it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lit_multimodal.paths import make_shareable

__all__ = ["atomic_path", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; on normal exit it replaces ``path``, on error it is removed.

    For writers that take a file name (``safetensors.save_file``, ``PIL.Image.save``, ``torch.save``)::

        with atomic_path(target) as tmp:
            save_file(tensors, str(tmp))

    The parent folder is created. A writer that produced nothing leaves ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and a random part: two processes, or two threads of one, never share a temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if os.path.lexists(tmp):
            make_shareable(tmp)  # some writers (safetensors) create files readable by their owner only
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(
    path: str | os.PathLike[str], payload: Any, indent: int | None = 2, sort_keys: bool = True
) -> Path:
    """Writes ``payload`` as JSON (values JSON cannot hold as their ``str``) plus a newline, atomically.

    Args:
        path: the target file.
        payload: anything ``json.dumps`` takes.
        indent: JSON indentation.
        sort_keys: sort object keys (stable files for diffs and hashes).
    """
    return write_text_atomic(path, json.dumps(payload, indent=indent, sort_keys=sort_keys, default=str) + "\n")
