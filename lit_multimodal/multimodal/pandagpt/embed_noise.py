"""Gaussian noise on the modality embedding during training (CapDec, Nukrai et al., EMNLP Findings 2022).

CapDec trains a captioner on CLIP *text* embeddings only and captions *images* at test time. The two modalities
sit in different regions of the shared space (the "modality gap"), so a decoder fitted to one reads the other
poorly. Adding ``N(0, σ²)`` noise to the unit-norm embedding during training (CapDec: variance 0.016, σ ≈ 0.126
per dimension of CLIP's 512-d space) makes the decoder answer the same for every point near a training
embedding, and the other modality's embedding falls into that neighbourhood.

PandaGPT has the same situation: it learns to read ImageBind *image* embeddings and is asked about audio, depth
or thermal ones, which ImageBind aligned with images only up to such a gap. The option is off by default (the
official PandaGPT adds no noise); ``model.embed_noise_std`` turns it on. Noise is added in training steps only,
never in validation, evaluation or chat.
"""

from __future__ import annotations

import torch

__all__ = ["add_embedding_noise"]


def add_embedding_noise(embeds: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``embeds + ε`` with ``ε ~ N(0, std²)`` drawn independently per element (CapDec's noise injection).

    Args:
        embeds: ``(B, D)`` modality embeddings (unit norm for PandaGPT's image embeddings).
        std: standard deviation per dimension; 0 returns ``embeds`` unchanged.
        generator: random generator (default: torch's global one, seeded by ``seed_everything``).

    Returns:
        The noisy embeddings, same shape, dtype and device.

    Raises:
        ValueError: a negative ``std``.
    """
    if std < 0:
        raise ValueError(f"model.embed_noise_std must be >= 0, got {std}")
    if std == 0:
        return embeds
    noise = torch.randn(embeds.shape, generator=generator, dtype=torch.float32, device=embeds.device)
    return embeds + (std * noise).to(embeds.dtype)
