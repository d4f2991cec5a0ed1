"""On-disk embedding cache: one table per (encoder weights, modality, preprocessing settings).

A table is a folder ``<root>/<table key>/`` holding ``meta.json`` (everything the key was made of, readable)
and append-only safetensors shards, each mapping an item key (the SHA-256 of a file's bytes, or of a text)
to its ``(dim,)`` float32 embedding. Shards are written to a temporary name and renamed, so a killed run
leaves complete shards only; any change of weights, modality or preprocessing gives a different table key,
so a stale embedding is never returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lit_multimodal.files import atomic_path

from .preprocess.errors import InputError

__all__ = ["EmbeddingCache", "content_key", "file_digest", "table_key"]

META_FILE = "meta.json"
_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_key(modality: str, item: str) -> str:
    """The cache key of one input: the SHA-256 of the text itself for ``text``, of the file's bytes otherwise."""
    if modality == "text":
        return hashlib.sha256(item.encode("utf-8")).hexdigest()
    return file_digest(item)


def table_key(meta: Mapping[str, Any]) -> str:
    """A short stable hash of the JSON form of ``meta`` (sorted keys)."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:20]


class EmbeddingCache:
    """One cache table: item key → embedding, stored as safetensors shards under ``root/<table key>/``.

    Args:
        root: the cache folder (shared by all tables).
        meta: what determines the embeddings (encoder identity, modality, preprocessing settings); hashed
            into the table key and written to ``meta.json``.
    """

    def __init__(self, root: str | Path, meta: Mapping[str, Any]) -> None:
        self.meta = dict(meta)
        self.key = table_key(self.meta)
        self.folder = Path(root).expanduser() / self.key
        self._table: dict[str, torch.Tensor] | None = None

    def _load(self) -> dict[str, torch.Tensor]:
        if self._table is None:
            self._table = {}
            for shard in sorted(self.folder.glob("shard-*.safetensors")):
                try:
                    self._table.update(load_file(str(shard)))
                except Exception as err:  # noqa: BLE001 - safetensors raises its own error type, or OSError
                    raise InputError(
                        f"{shard}: unreadable embedding-cache shard ({type(err).__name__}: {err}); it was cut short "
                        "or changed after it was written; delete it and run again to recompute its embeddings"
                    ) from None
        return self._table

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """The cached embeddings among ``keys`` (missing keys are left out)."""
        table = self._load()
        return {key: table[key] for key in keys if key in table}

    def put(self, embeddings: Mapping[str, torch.Tensor]) -> Path | None:
        """Appends new embeddings as one shard; returns the shard written (None when all were cached)."""
        table = self._load()
        new = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in embeddings.items() if k not in table}
        if not new:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / META_FILE
        if not meta_path.exists():
            meta_path.write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n")
        index = len(list(self.folder.glob("shard-*.safetensors")))
        while (shard := self.folder / f"shard-{index:06d}.safetensors").exists():
            index += 1
        with atomic_path(shard) as partial:
            save_file(new, str(partial))
        table.update(new)
        return shard
