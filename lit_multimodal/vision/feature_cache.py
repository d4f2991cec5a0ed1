"""Backbone-feature cache for linear probing: each split's frozen features computed once, reused by every run.

A linear probe trains only the head on features of a frozen backbone. Where a split's transform is
deterministic (every VTAB split, the FGVC eval splits), those features are the same in every epoch, every
grid point of the lr × wd search and every seed, so they are computed once and stored as a safetensors file
under ``<cache dir>/features/<key hash>.safetensors``.

The key (stored in the file's metadata and compared on load, so a hash collision or a stale file is never
used) holds:

* the backbone: a SHA-256 of every tensor of its state dict (weights from any checkpoint or seed), its
  architecture, input size and pooling;
* the data: the data module's class and dataset name, the split, a SHA-256 over each image's path, size,
  modification time and label, and the transform's full description;
* the trainer precision (features of a ``bf16-mixed`` run differ from fp32 ones) and the timm version.

Changing any of them gives a new key; old files stay until the cache folder is cleaned. Files are written to a
temporary name and renamed, so parallel runs of a sweep may race to fill the same entry without harm.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from lit_multimodal.files import atomic_path
from lit_multimodal.paths import cache_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def default_feature_dir() -> Path:
    """``<framework cache>/features`` (``$LIT_MM_CACHE/features`` when the variable is set)."""
    return cache_dir() / "features"


def state_dict_digest(module: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor in ``module.state_dict()``."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def key_digest(key: dict[str, Any]) -> str:
    """A stable SHA-256 of a JSON-serialisable key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class FeatureDataset(Dataset):
    """Precomputed ``(feature, label)`` pairs: what a linear probe's loaders yield instead of images."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} features but {len(labels)} labels")
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.features[index], int(self.labels[index])


class FeatureCache:
    """A folder of feature files, one per key.

    Args:
        directory: cache folder; default :func:`default_feature_dir`.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_feature_dir()

    def path(self, key: dict[str, Any]) -> Path:
        """File of ``key``."""
        return self.directory / f"{key_digest(key)[:32]}.safetensors"

    def load(self, key: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cached ``(features, labels)`` of ``key``, or None when absent (or written for another key)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                stored = (handle.metadata() or {}).get("key")
            tensors = load_file(str(path))
        except (OSError, ValueError, RuntimeError) as err:  # a truncated or foreign file: recompute
            log.warning("ignoring unreadable feature cache file %s: %s", path, err)
            return None
        if stored != json.dumps(key, sort_keys=True, default=str):
            log.warning("feature cache file %s holds another key; recomputing", path)
            return None
        return tensors["features"], tensors["labels"]

    def save(self, key: dict[str, Any], features: torch.Tensor, labels: torch.Tensor) -> Path:
        """Writes ``key``'s entry atomically (temporary file, then rename)."""
        path = self.path(key)
        with atomic_path(path) as tmp:
            tensors = {"features": features.contiguous(), "labels": labels.contiguous()}
            save_file(tensors, str(tmp), metadata={"key": json.dumps(key, sort_keys=True, default=str)})
        return path

    def get_or_compute(
        self, key: dict[str, Any], compute: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        """``(features, labels)`` of ``key`` from the cache, or computed by ``compute`` and stored.

        Returns:
            The tensors and whether they came from the cache.
        """
        cached = self.load(key)
        if cached is not None:
            return cached, True
        features, labels = compute()
        self.save(key, features, labels)
        return (features, labels), False


def backbone_key(backbone: nn.Module, arch: str, img_size: int, pooling: str) -> dict[str, Any]:
    """The backbone part of a cache key."""
    return {
        "arch": arch,
        "img_size": img_size,
        "pooling": pooling,
        "weights_sha256": state_dict_digest(backbone),
        "timm": timm.__version__,
        "format": FORMAT_VERSION,
    }
