"""Projectors from one modality embedding to the LLM's soft token(s).

- ``linear`` (PandaGPT, default): ``Linear(embed_dim, n * hidden)`` with bias; with ``n = 1`` this is the
  official ``llama_proj`` (state-dict keys ``llama_proj.weight`` / ``llama_proj.bias``, so the official delta
  export stays valid).
- ``mlp2x_gelu`` (LLaVA-1.5): ``Linear(embed_dim, hidden)``, GELU, ``Linear(hidden, n * hidden)``.

The output is reshaped to ``n`` tokens per embedding. More tokens add capacity, not information: they all come
from the same global ImageBind vector.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["PROJECTORS", "ProjectorKind", "build_projector", "project"]

ProjectorKind = Literal["linear", "mlp2x_gelu"]
PROJECTORS = ("linear", "mlp2x_gelu")


def build_projector(kind: str, embed_dim: int, hidden: int, soft_tokens: int = 1) -> nn.Module:
    """The projector module (see the module docstring).

    Args:
        kind: ``linear`` or ``mlp2x_gelu``.
        embed_dim: modality embedding width (1024 for ImageBind-huge).
        hidden: the LLM's hidden size.
        soft_tokens: tokens per modality embedding.
    """
    if soft_tokens < 1:
        raise ValueError(f"model.soft_tokens must be at least 1, got {soft_tokens}")
    if kind == "linear":
        return nn.Linear(embed_dim, soft_tokens * hidden, bias=True)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, soft_tokens * hidden))
    raise ValueError(f"unknown model.projector {kind!r}; expected one of {PROJECTORS}")


def project(projector: nn.Module, embeds: torch.Tensor, soft_tokens: int) -> torch.Tensor:
    """``(B, embed_dim)`` embeddings → ``(B, soft_tokens, hidden)`` soft tokens."""
    first = projector if isinstance(projector, nn.Linear) else projector[0]
    out = projector(embeds.to(first.weight.dtype))
    return out.reshape(out.shape[0], soft_tokens, -1)
