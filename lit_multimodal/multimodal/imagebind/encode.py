"""The embedding API: files of any modality → ImageBind embeddings, batched, with an optional on-disk cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .cache import EmbeddingCache, content_key
from .checkpoint import build_imagebind
from .config import ImageBindConfig
from .model import ImageBindModel
from .preprocess import ENCODER_KEY, load_inputs, preprocess_settings
from .preprocess.text import check_texts

__all__ = ["MODALITY_NAMES", "ImageBindEncoder", "loader_key"]

RANDOM_INIT_SEED = 0

#: The names users give modalities, and the loader each one uses (``image`` and ``vision`` are the same).
MODALITY_NAMES: dict[str, str] = {
    "image": "vision",
    "vision": "vision",
    "video": "video",
    "text": "text",
    "audio": "audio",
    "depth": "depth",
    "thermal": "thermal",
    "imu": "imu",
}


def loader_key(modality: str) -> str:
    """The loader key of a user-facing modality name (``image`` → ``vision``)."""
    if modality not in MODALITY_NAMES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {sorted(MODALITY_NAMES)}")
    return MODALITY_NAMES[modality]


class ImageBindEncoder:
    """A frozen ImageBind that embeds files (or texts) of any modality, batched, with a progress bar.

    ``encode({"image": [...], "audio": [...]})`` returns ``{"image": (B, 1024), "audio": (B, 1024)}`` in
    input order. With ``cache_dir`` every embedding is stored under the SHA-256 of its file's bytes, in a
    table keyed by the weights, the modality and every preprocessing setting; a later call returns the
    stored tensor, bit-identical to the fresh encode, without running the model (the model is only built
    on the first miss). The object is also a PandaGPT ``Embedder`` (:meth:`embed`), so instruction tuning
    can read embeddings from the cache and never hold ImageBind in memory.

    Args:
        checkpoint: ``imagebind_huge.pth`` (or a safetensors / PandaGPT file, see ``load_imagebind_state``);
            None gives random weights from a fixed seed (tests and smoke runs only).
        preset: architecture, ``huge`` (the released model) or ``tiny`` (test-sized, same inputs).
        config: overrides of the preset's fields (e.g. ``{"pandagpt_skip_audio_scale": true}``).
        dtype: weights and compute dtype: ``fp32``, ``bf16`` or ``fp16``. Embeddings are returned in fp32.
        device: where the model runs (``cpu``, ``cuda``, ``cuda:1``).
        batch_size: files per forward pass.
        cache_dir: embedding cache folder; None disables caching.
        cache_only: never build the model: a file that is not cached is an error (PandaGPT training from a
            cache built with ``lit-mm embed``).
        preprocess: loader options per modality, e.g. ``{"audio": {"clips": 3}, "depth": {"normalize": false}}``.
        progress: show a progress bar for work of more than one batch.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        preset: Literal["huge", "tiny"] = "huge",
        config: dict[str, Any] | None = None,
        dtype: Literal["fp32", "bf16", "fp16"] = "fp32",
        device: str = "cpu",
        batch_size: int = 8,
        cache_dir: str | None = None,
        cache_only: bool = False,
        preprocess: dict[str, dict[str, Any]] | None = None,
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if cache_only and cache_dir is None:
            raise ValueError("cache_only needs a cache_dir")
        self.checkpoint = str(Path(checkpoint).expanduser()) if checkpoint else None
        factory = {"huge": ImageBindConfig.huge, "tiny": ImageBindConfig.tiny}[preset]
        self.config = factory(**(config or {}))
        self.preset = preset
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.cache_only = cache_only
        self.preprocess = {loader_key(m): dict(options) for m, options in (preprocess or {}).items()}
        self.progress = progress
        self._model: ImageBindModel | None = None
        self._caches: dict[str, EmbeddingCache] = {}
        self._digests: dict[tuple[str, int, int], str] = {}

    @property
    def model(self) -> ImageBindModel:
        """The frozen model, built (and its checkpoint loaded) on first use."""
        if self._model is None:
            if self.cache_only:
                raise RuntimeError("cache_only is set: the model is never built")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)  # without a checkpoint: the same random weights every time
                self._model = build_imagebind(self.config, self.checkpoint, dtype=self.dtype, device=self.device)
        return self._model

    def weights_identity(self) -> dict[str, Any]:
        """What identifies the weights in cache keys: the checkpoint's resolved path, size and mtime."""
        if self.checkpoint is None:
            return {"checkpoint": None, "random_init_seed": RANDOM_INIT_SEED}
        stat = Path(self.checkpoint).stat()
        return {"checkpoint": str(Path(self.checkpoint).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def cache_meta(self, modality: str) -> dict[str, Any]:
        """Everything that determines ``modality``'s embeddings: weights, architecture, dtype, preprocessing."""
        key = loader_key(modality)
        return {
            "weights": self.weights_identity(),
            "config": self.config.__dict__,
            "dtype": self.dtype,
            "preprocess": preprocess_settings(key, **self.preprocess.get(key, {})),
        }

    def cache_for(self, modality: str) -> EmbeddingCache | None:
        """The cache table of ``modality`` under these weights and settings (None without ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        key = loader_key(modality)
        if key not in self._caches:
            self._caches[key] = EmbeddingCache(self.cache_dir, self.cache_meta(key))
        return self._caches[key]

    def _item_key(self, modality: str, item: str) -> str:
        if loader_key(modality) == "text":
            return content_key("text", item)
        stat = Path(item).stat()  # memoised per (path, size, mtime): epochs re-read the same files
        memo = (str(item), stat.st_size, stat.st_mtime_ns)
        if memo not in self._digests:
            self._digests[memo] = content_key(modality, item)
        return self._digests[memo]

    @torch.inference_mode()
    def _forward(self, modality: str, items: Sequence[str]) -> torch.Tensor:
        key = loader_key(modality)
        inputs = load_inputs(key, items, **self.preprocess.get(key, {}))
        model = self.model
        return model.encode(ENCODER_KEY[key], inputs.to(self.device)).float().cpu()

    def encode_one(self, modality: str, items: Sequence[str], progress: Progress | None = None) -> torch.Tensor:
        """Embeddings ``(len(items), dim)`` of one modality's files (texts for ``text``), in order."""
        items = [str(item) for item in items]
        if loader_key(modality) == "text":
            check_texts(items)  # before the cache: an empty text must not be served from it either
        cache = self.cache_for(modality)
        keys = [self._item_key(modality, item) for item in items] if cache is not None else []
        found = cache.get(keys) if cache is not None else {}
        todo = [i for i in range(len(items)) if cache is None or keys[i] not in found]
        if todo and self.cache_only:
            missing = [items[i] for i in todo[:5]]
            raise FileNotFoundError(
                f"{len(todo)} of {len(items)} {modality} inputs are not in the embedding cache {cache.folder} "
                f"(e.g. {missing}); build it with `lit-mm embed --modality {modality} --files ... --out "
                f"{self.cache_dir}` with the same checkpoint, preset, dtype and preprocessing"
            )
        task = progress.add_task(modality, total=len(todo)) if progress is not None and todo else None
        fresh: dict[int, torch.Tensor] = {}
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            out = self._forward(modality, [items[i] for i in batch])
            fresh.update(zip(batch, out, strict=True))
            if cache is not None:
                cache.put({keys[i]: fresh[i] for i in batch})
            if task is not None:
                progress.advance(task, len(batch))
        rows = [fresh[i] if i in fresh else found[keys[i]] for i in range(len(items))]
        if not rows:
            return torch.empty(0, self.config.out_embed_dim)
        return torch.stack(rows)

    def encode(self, inputs: Mapping[str, Sequence[str]]) -> dict[str, torch.Tensor]:
        """Embeds every modality's inputs: ``{"image": [paths], "text": [strings], ...}`` → ``{name: (B, dim)}``.

        Args:
            inputs: user-facing modality name (``image``, ``video``, ``text``, ``audio``, ``depth``, ``thermal``,
                ``imu``) → file paths (strings for ``text``).

        Returns:
            The float32 embeddings under the same names, rows in input order.
        """
        for name in inputs:
            loader_key(name)
        total = sum(len(v) for v in inputs.values())
        show = self.progress and total > self.batch_size
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not show, transient=True) as progress:
            return {name: self.encode_one(name, items, progress) for name, items in inputs.items()}

    def embed(self, modality: str, paths: list[str]) -> torch.Tensor:
        """The PandaGPT ``Embedder`` interface: ``(len(paths), dim)`` embeddings, no progress bar."""
        return self.encode_one(modality, paths)

    def text_logit_scale(self) -> float:
        """The text postprocessor's logit scale (``exp(log_logit_scale)``, clipped as the official)."""
        scale = self.model.modality_postprocessors["text"][1].log_logit_scale.exp().item()
        return min(scale, self.config.max_logit_scale)
