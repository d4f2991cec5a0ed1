"""ImageBind's objective (symmetric InfoNCE, fixed temperature) and cross-modal retrieval recall.

Hand-written because the objective is four lines of cross-entropy over a similarity matrix, and the paper's exact
form (sum of both directions, cross-modal negatives only, fixed per-modality τ) is what matters here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PAPER_TEMPERATURE", "infonce_loss", "retrieval_recalls"]

#: Fixed temperatures of ImageBind (paper Table 9; 1 / the released checkpoint's logit scales). Image and text are
#: OpenCLIP's frozen pair; binding one of them to the other here uses CLIP's initial 0.07.
PAPER_TEMPERATURE: dict[str, float] = {
    "audio": 0.05,
    "depth": 0.2,
    "thermal": 0.1,
    "imu": 0.2,
    "vision": 0.07,
    "text": 0.07,
}


def infonce_loss(
    modality: Tensor, anchor: Tensor, temperature: float, labels: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """ImageBind's loss ``L_{I,M} + L_{M,I}`` (paper Eq. 1, both directions) over in-batch negatives.

    Row ``i`` of ``modality`` and of ``anchor`` are a positive pair; every other row of the other side is a
    negative. Both sides are L2-normalised, logits are ``cos / temperature``.

    Args:
        modality: ``(B, D)`` embeddings of the modality being bound.
        anchor: ``(B, D)`` embeddings of the frozen anchor modality.
        temperature: fixed τ.
        labels: optional ``(B,)`` class ids; when given, off-diagonal pairs of the same class are not used as
            negatives (false-negative masking for class-paired data). ``-1`` marks unlabelled rows.

    Returns:
        ``(loss, loss_modality_to_anchor, loss_anchor_to_modality)``; ``loss`` is their sum.
    """
    if modality.shape != anchor.shape or modality.ndim != 2:
        raise ValueError(
            f"expected two (B, D) tensors of one shape, got {tuple(modality.shape)}, {tuple(anchor.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = F.normalize(modality.float(), dim=-1) @ F.normalize(anchor.float(), dim=-1).T / temperature
    if labels is not None:
        same = (labels[:, None] == labels[None, :]) & (labels[:, None] >= 0)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    to_anchor = F.cross_entropy(logits, target)
    to_modality = F.cross_entropy(logits.T, target)
    return to_anchor + to_modality, to_anchor, to_modality


def retrieval_recalls(
    queries: Tensor, keys: Tensor, ks: Sequence[int] = (1, 5, 10), labels: Tensor | None = None
) -> dict[str, float]:
    """Recall@k of retrieving ``keys[i]`` for ``queries[i]`` by cosine similarity.

    Args:
        queries: ``(N, D)``.
        keys: ``(N, D)``; row ``i`` is the one relevant key of query ``i``.
        ks: cut-offs.
        labels: optional ``(N,)`` class ids; adds ``class_R@1``: the top key has the query's class (the
            meaningful retrieval for class-paired data).

    Returns:
        ``{"R@1": ..., "R@5": ..., ...}`` as fractions in [0, 1].
    """
    sims = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T
    positive = sims.diagonal()[:, None]
    # rank = number of keys scoring strictly higher than the positive (ties count in the query's favour)
    rank = (sims > positive).sum(dim=1)
    out = {f"R@{k}": float((rank < k).float().mean()) for k in ks}
    if labels is not None:
        top = sims.argmax(dim=1)
        out["class_R@1"] = float((labels[top] == labels).float().mean())
    return out
