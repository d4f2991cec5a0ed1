"""PandaGPT's training signal: the summed causal-LM loss and the official ``gen_acc``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_multimodal.multimodal.pandagpt.conversation import IGNORE_INDEX

__all__ = ["causal_lm_loss_sum", "official_gen_acc"]


def causal_lm_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy (fp32) over targets != -100, and the number of such targets.

    ``sum / count`` is the Hugging Face causal-LM loss (shift by one, mean over non-ignored tokens).
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = targets[:, 1:].to(shift_logits.device)
    loss_sum = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss_sum, (shift_labels != IGNORE_INDEX).sum()


def official_gen_acc(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The official ``gen_acc``: ``argmax(logits)[:, 1:-1]`` against ``targets[:, 2:]`` where the target != -100."""
    chosen = logits.argmax(dim=-1)[:, 1:-1]
    labels = targets[:, 2:]
    valid = labels != IGNORE_INDEX
    count = int(valid.sum())
    return float(((chosen == labels) & valid).sum()) / count if count else 0.0
