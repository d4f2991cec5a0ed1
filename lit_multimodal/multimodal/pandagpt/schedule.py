"""The official PandaGPT schedule: DeepSpeed ``WarmupDecayLR`` with a logarithmic warmup, as a ``LambdaLR``.

DeepSpeed's scheduler, after ``i`` calls of ``step()`` (``last_batch_iteration = i - 1``), sets

- ``lr = max_lr * ln(s + 1) / ln(W)`` for ``s < W`` (``warmup_type='log'``), with ``s = last_batch_iteration``,
- ``lr = max_lr * max(0, (T - s) / max(1, T - W))`` afterwards,

with ``W = max(2, warmup_steps)`` and ``T`` the total number of steps; the official sets
``W = max(10, int(0.1 * T))``. DeepSpeed steps the scheduler right after every optimizer step and
(0.19.8) starts the optimizer at ``warmup_min_lr = 0``, so optimizer update ``k`` (0-based) runs at
``factor(k - 1)`` and update 0 runs at 0.
"""

from __future__ import annotations

import math

import torch

__all__ = ["build_warmup_decay_scheduler", "pandagpt_lr_factor", "pandagpt_warmup_steps", "update_lr_factor"]


def pandagpt_warmup_steps(total_steps: int, warmup_rate: float = 0.1, min_steps: int = 10) -> int:
    """``max(min_steps, int(total_steps * warmup_rate))``: the official ``warmup_num_steps``."""
    return max(min_steps, int(total_steps * warmup_rate))


def pandagpt_lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """DeepSpeed ``WarmupDecayLR`` (``warmup_type='log'``, ``warmup_min_lr=0``) factor at ``last_batch_iteration``.

    Args:
        step: DeepSpeed's ``last_batch_iteration`` (0 after the first scheduler step).
        warmup_steps: ``warmup_num_steps`` (DeepSpeed raises it to at least 2).
        total_steps: ``total_num_steps``.

    Returns:
        The multiplier of the peak learning rate, in [0, 1].
    """
    if step < 0:
        return 0.0
    warmup = max(2, warmup_steps)
    if step < warmup:
        return math.log(step + 1) / math.log(warmup)
    return max(0.0, (total_steps - step) / max(1.0, total_steps - warmup))


def update_lr_factor(update: int, warmup_steps: int, total_steps: int) -> float:
    """Factor of optimizer update ``update`` (0-based) under DeepSpeed 0.19.8: ``factor(update - 1)``, 0 first."""
    return pandagpt_lr_factor(update - 1, warmup_steps, total_steps)


def build_warmup_decay_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` to be stepped once per optimizer step, reproducing DeepSpeed's update-by-update lr.

    Args:
        optimizer: optimizer whose group ``lr`` is the peak learning rate.
        warmup_steps: warmup length ``W``.
        total_steps: total optimizer steps ``T``.
    """

    def factor(update: int) -> float:
        return update_lr_factor(update, warmup_steps, total_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
