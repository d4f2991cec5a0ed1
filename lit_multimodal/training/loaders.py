"""The one DataLoader builder of the package, and the collate function that drops skipped samples.

Both the image-classification DataModules (``data/``) and the PandaGPT instruction data build their loaders
here, so worker, pinning and resumability settings mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader, Dataset, default_collate

from lit_multimodal.training.resumable_loader import ResumableDataLoader

__all__ = ["build_loader", "collate_skipping_none"]


def collate_skipping_none(batch: list):
    """``default_collate`` after dropping samples a dataset skipped (returned as None); None when all were."""
    kept = [item for item in batch if item is not None]
    if not kept:
        return None
    return default_collate(kept)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    pin_memory: bool = False,
    collate_fn: Callable[[list], Any] = collate_skipping_none,
    drop_last: bool = False,
    resumable: bool = False,
) -> DataLoader:
    """A DataLoader; workers persist between epochs when there are any.

    Args:
        dataset: the map-style dataset.
        batch_size: per-device batch size.
        shuffle: a new random order every epoch (fixed by the run's seed).
        num_workers: loader worker processes (0: load in the main process).
        pin_memory: pin host memory.
        collate_fn: batch builder (default: :func:`collate_skipping_none`).
        drop_last: drop the last incomplete batch.
        resumable: a shuffled loader that keeps its place in checkpoints, so a mid-epoch resume continues the
            epoch's order (:class:`~lit_multimodal.training.resumable_loader.ResumableDataLoader`).
    """
    loader_class = ResumableDataLoader if resumable and shuffle else DataLoader
    return loader_class(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
        drop_last=drop_last,
    )
