"""Where PandaGPT's modality embeddings come from: a small protocol and a precomputed (cached) implementation.

The official encodes images with a frozen ImageBind-huge inside every forward pass; its vision path has no
stochastic layers, so embeddings computed once offline are exact and any object with an :meth:`Embedder.embed`
method can stand in for the encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from lit_multimodal.file_kind import describe_content
from lit_multimodal.training.errors import DataError

__all__ = ["Embedder", "PrecomputedEmbedder"]


@runtime_checkable
class Embedder(Protocol):
    """Maps files of one modality to their ``(B, 1024)`` embeddings (float, no gradient)."""

    def embed(self, modality: str, paths: list[str]) -> torch.Tensor:
        """Embeddings of ``paths`` in order, shape ``(len(paths), dim)``."""
        ...


class PrecomputedEmbedder:
    """Embeddings read from a safetensors file that maps a file path (string key) to a ``(dim,)`` tensor.

    Args:
        path: the safetensors file.
        modality: the only modality the file holds (``vision`` for PandaGPT's images).
        relative_to: when set, keys are paths relative to this folder (lookups relativise the paths given),
            so that the data may move; otherwise keys are the path strings exactly as the data gives them.
        dtype: dtype of the returned embeddings.
    """

    def __init__(
        self,
        path: str,
        modality: str = "vision",
        relative_to: str | None = None,
        dtype: str = "float32",
    ) -> None:
        from safetensors.torch import load_file

        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"embedding file {file} does not exist")
        self.path = file
        self.modality = modality
        self.relative_to = relative_to
        self.dtype = getattr(torch, dtype)
        try:
            self.table = load_file(str(file))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for a cut or foreign file
            raise DataError(
                f"{file}: not a readable safetensors embedding table ({type(err).__name__}: {err}); the file is "
                f"{describe_content(file)}"
            ) from None
        shapes = {tuple(t.shape) for t in self.table.values()}
        if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
            raise DataError(f"{file}: every tensor must be 1-d and of one size, found shapes {sorted(shapes)[:4]}")
        self.dim = next(iter(shapes))[0] if shapes else 0

    def _key(self, path: str) -> str:
        if self.relative_to is None:
            return path
        return os.path.relpath(path, self.relative_to)

    def embed(self, modality: str, paths: list[str]) -> torch.Tensor:
        """Looks up ``paths``; raises ``KeyError`` naming the first path that the file does not hold."""
        if modality != self.modality:
            raise ValueError(f"{self.path} holds {self.modality!r} embeddings, not {modality!r}")
        rows = []
        for path in paths:
            key = self._key(path)
            if key not in self.table:
                raise KeyError(f"no embedding for {key!r} in {self.path} ({len(self.table)} entries)")
            rows.append(self.table[key])
        return torch.stack(rows).to(self.dtype)
