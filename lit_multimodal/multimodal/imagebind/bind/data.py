"""``BindDataModule``: pairs of (frozen anchor embedding, raw input of the modality being bound) from a manifest.

The anchor side is embedded once by the frozen ImageBind through :class:`ImageBindEncoder` and its on-disk
embedding cache, so later runs (other modalities, other seeds) never run the anchor encoder again. The bound
modality is loaded by its ImageBind loader; with ``preload`` every input is loaded once into memory.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset

from lit_multimodal.errors import DataError

from ..encode import ImageBindEncoder, loader_key
from ..preprocess import load_inputs
from .manifest import PairRecord, read_pairs

__all__ = ["BindDataModule", "PairDataset"]

_PRELOAD_CHUNK = 64


class PairDataset(Dataset):
    """``(input, anchor embedding, label id)`` triples; inputs loaded on access or taken from memory."""

    def __init__(
        self,
        modality: str,
        items: list[str],
        anchors: torch.Tensor,
        labels: torch.Tensor,
        options: dict[str, Any],
        inputs: torch.Tensor | None = None,
    ) -> None:
        self.modality = modality
        self.items = items
        self.anchors = anchors
        self.labels = labels
        self.options = options
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.inputs is not None:
            x = self.inputs[index]
            x = x.float() if x.is_floating_point() else x
        else:
            x = load_inputs(loader_key(self.modality), [self.items[index]], **self.options)[0]
        return {"input": x, "anchor": self.anchors[index], "label": self.labels[index], "index": index}


class BindDataModule(LightningDataModule):
    """Paired data for ``lit-mm bind``: a frozen anchor modality's embeddings and the bound modality's inputs.

    Args:
        manifest: jsonl/csv of ``anchor``, ``other`` and optional ``label``/``split`` (see ``manifest.py``).
        modality: modality of the ``other`` files (the one being bound): ``audio``, ``depth``, ``thermal``,
            ``imu``, ``image``/``vision`` or ``text``.
        anchor: the frozen modality (``image`` by default, as ImageBind; ``text`` optional).
        checkpoint: ImageBind weights of the anchor encoder (the same as the model's ``checkpoint``).
        preset: architecture of the anchor encoder (``huge`` or ``tiny``).
        config: preset overrides (the same as the model's ``config``).
        cache_dir: embedding cache of the anchor encoder (``lit-mm embed --out``); None: no cache.
        dtype: anchor encoder dtype.
        device: where the anchor encoder runs.
        encode_batch_size: anchor files per forward pass.
        preprocess: loader options of the bound modality, e.g. ``{"clips": 1}`` for audio (the paper trains on
            one random 2-s clip).
        batch_size: pairs per training step (in-batch negatives: larger is harder).
        val_fraction: held-out fraction when the manifest has no ``split`` field.
        seed: seed of that split.
        num_workers: loader workers.
        preload: load every input of the bound modality once into memory.
        preload_dtype: storage dtype of preloaded inputs (``float16`` halves the memory of 224-px images).
    """

    def __init__(
        self,
        manifest: str,
        modality: Literal["audio", "depth", "thermal", "imu", "image", "vision", "text"] = "audio",
        anchor: Literal["image", "vision", "text"] = "image",
        checkpoint: str | None = None,
        preset: Literal["huge", "tiny"] = "huge",
        config: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        dtype: Literal["fp32", "bf16", "fp16"] = "fp32",
        device: str = "cpu",
        encode_batch_size: int = 32,
        preprocess: dict[str, Any] | None = None,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        preload: bool = True,
        preload_dtype: Literal["float32", "float16"] = "float32",
    ) -> None:
        super().__init__()
        loader_key(modality)
        if loader_key(anchor) == loader_key(modality):
            raise DataError(f"anchor and bound modality are both {modality!r}")
        self.manifest = manifest
        self.modality = "vision" if modality == "image" else modality
        self.anchor = "vision" if anchor == "image" else anchor
        self.checkpoint = checkpoint
        self.preset = preset
        self.config = dict(config or {})
        self.cache_dir = cache_dir
        self.dtype = dtype
        self.device = device
        self.encode_batch_size = encode_batch_size
        self.preprocess = dict(preprocess or {})
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.preload = preload
        self.preload_dtype = getattr(torch, preload_dtype)
        self.classes: list[str] = []
        self.train_set: PairDataset | None = None
        self.val_set: PairDataset | None = None

    def anchor_encoder(self) -> ImageBindEncoder:
        """The frozen anchor encoder (built lazily; with a cache it runs only on files not yet embedded)."""
        return ImageBindEncoder(
            checkpoint=self.checkpoint,
            preset=self.preset,
            config=self.config,
            dtype=self.dtype,
            device=self.device,
            batch_size=self.encode_batch_size,
            cache_dir=self.cache_dir,
        )

    def split(self, pairs: list[PairRecord]) -> tuple[list[int], list[int]]:
        """Train and held-out indices: the manifest's ``split`` field, else a seeded ``val_fraction``."""
        if any(p.split for p in pairs):
            train = [i for i, p in enumerate(pairs) if p.split != "val"]
            val = [i for i, p in enumerate(pairs) if p.split == "val"]
        else:
            order = np.random.default_rng(self.seed).permutation(len(pairs))
            n_val = round(len(pairs) * self.val_fraction)
            val, train = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
        if not train:
            raise DataError(f"{self.manifest}: no training pairs")
        return train, val

    def _load_all(self, items: list[str]) -> torch.Tensor:
        key = loader_key(self.modality)
        chunks = []
        with Progress(transient=True, disable=len(items) <= _PRELOAD_CHUNK) as progress:
            task = progress.add_task(f"loading {self.modality}", total=len(items))
            for start in range(0, len(items), _PRELOAD_CHUNK):
                batch = items[start : start + _PRELOAD_CHUNK]
                loaded = load_inputs(key, batch, **self.preprocess)
                chunks.append(loaded.to(self.preload_dtype) if loaded.is_floating_point() else loaded)
                progress.advance(task, len(batch))
        return torch.cat(chunks)

    def setup(self, stage: str | None = None) -> None:
        """Reads the manifest, embeds the anchors (cached) and loads the inputs."""
        if self.train_set is not None:
            return
        pairs = read_pairs(self.manifest, self.anchor, self.modality)
        self.classes = sorted({p.label for p in pairs if p.label is not None})
        class_id = {name: i for i, name in enumerate(self.classes)}
        labels = torch.tensor([class_id[p.label] if p.label is not None else -1 for p in pairs])
        anchor_name = "image" if self.anchor == "vision" else self.anchor
        anchors = self.anchor_encoder().encode({anchor_name: [p.anchor for p in pairs]})[anchor_name]
        anchors = F.normalize(anchors, dim=-1)
        items = [p.other for p in pairs]
        inputs = self._load_all(items) if self.preload else None
        train, val = self.split(pairs)

        def subset(indices: list[int]) -> PairDataset:
            index = torch.tensor(indices, dtype=torch.long)
            return PairDataset(
                self.modality,
                [items[i] for i in indices],
                anchors[index],
                labels[index],
                self.preprocess,
                inputs[index] if inputs is not None else None,
            )

        self.train_set = subset(train)
        self.val_set = subset(val) if val else None

    def train_dataloader(self) -> DataLoader:
        """Shuffled pairs; the last partial batch is dropped (in-batch negatives need full batches)."""
        drop = len(self.train_set) > self.batch_size
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers, drop_last=drop
        )

    def val_dataloader(self) -> DataLoader | list:
        """The held-out pairs in order (empty when there are none)."""
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
