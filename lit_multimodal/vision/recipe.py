"""The official VPT optimisation recipe: per-tensor SGD groups, lr scaled by batch/256, warmup-cosine per epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lit_multimodal.training.errors import check_setting


@dataclass
class OptimConfig:
    """Optimiser and schedule. Defaults are the official VPT recipe.

    Args:
        name: ``sgd`` (official for prompts, linear, partial and bias) or ``adamw`` (official for full
            fine-tuning); ``auto`` picks the tuning method's recipe: ``adamw`` for ``full`` and the
            adapter/LoRA-style methods, ``sgd`` for VPT, linear, partial and bias.
        base_lr: learning rate before scaling; the run uses ``base_lr * global_batch / 256`` when
            ``scale_lr`` is on (the official tune scripts do this; the scaled value is logged).
        weight_decay: L2 (SGD) or decoupled (AdamW) decay. SGD decays every trainable tensor except the
            head bias, as the official; AdamW decays weights and skips biases and norm parameters, and the
            value given here is honoured (the official AdamW branch silently uses 0.01).
        momentum: SGD momentum (no Nesterov, no dampening).
        betas: AdamW betas.
        eps: AdamW epsilon (official: 1e-6).
        scale_lr: scale the lr by ``global_batch / 256``.
        warmup_epochs: linear warmup epochs; epoch 0 trains at lr 0 as the official schedule.
        schedule: ``warmup_cosine`` stepped once per epoch (official) or ``constant``.
    """

    name: Literal["auto", "sgd", "adamw"] = "auto"
    base_lr: float = 0.25
    weight_decay: float = 0.001
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    scale_lr: bool = True
    warmup_epochs: int = 10
    schedule: Literal["warmup_cosine", "constant"] = "warmup_cosine"


def check_optim(config: OptimConfig, key: str = "optim") -> None:
    """Checks the values PyTorch would reject later with a traceback (a negative lr, decay or epsilon).

    Args:
        config: the settings.
        key: their place in the config, for the message (e.g. ``model.optim``).

    Raises:
        SettingError: a value out of range; the message names ``<key>.<field>``.
    """
    check_setting(config.base_lr >= 0, f"{key}.base_lr", config.base_lr, "a learning rate >= 0")
    check_setting(config.weight_decay >= 0, f"{key}.weight_decay", config.weight_decay, "a value >= 0")
    check_setting(config.momentum >= 0, f"{key}.momentum", config.momentum, "a value >= 0")
    check_setting(config.eps >= 0, f"{key}.eps", config.eps, "a value >= 0")
    check_setting(all(0 <= b < 1 for b in config.betas), f"{key}.betas", config.betas, "two values in [0, 1)")
    check_setting(config.warmup_epochs >= 0, f"{key}.warmup_epochs", config.warmup_epochs, "a count >= 0")


def scaled_lr(base_lr: float, global_batch: int, scale: bool = True) -> float:
    """``base_lr * global_batch / 256`` (or ``base_lr`` when ``scale`` is off)."""
    return base_lr * global_batch / 256.0 if scale else base_lr


def _is_no_decay_for_adamw(name: str, param: nn.Parameter) -> bool:
    # Biases and norm scales are 1-d; the official code meant to skip exactly these but its name match
    # ("LayerNorm.weight") never fires on ViT parameter names, so it decays norm weights by accident.
    return param.ndim <= 1 or name.endswith(".bias")


def build_optimizer(
    named_params: list[tuple[str, nn.Parameter]],
    config: OptimConfig,
    lr: float,
    tuning: str,
    auto_name: str | None = None,
) -> torch.optim.Optimizer:
    """Builds the optimiser over the trainable parameters.

    Args:
        named_params: ``(name, parameter)`` pairs of trainable parameters.
        config: optimiser settings.
        lr: the (already scaled) learning rate.
        tuning: tuning method, used to resolve ``name: auto`` when ``auto_name`` is not given.
        auto_name: what ``name: auto`` means for this method (its recipe's optimiser).
    """
    auto = auto_name or ("adamw" if tuning == "full" else "sgd")
    name = config.name if config.name != "auto" else auto
    if name == "sgd":
        # One group per tensor as the official make_optimizer; only the head bias is exempt from decay.
        groups = [
            {"params": [p], "weight_decay": 0.0 if n == "head.bias" else config.weight_decay, "name": n}
            for n, p in named_params
        ]
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    decay = [p for n, p in named_params if not _is_no_decay_for_adamw(n, p)]
    no_decay = [p for n, p in named_params if _is_no_decay_for_adamw(n, p)]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=config.betas, eps=config.eps)


def warmup_cosine_factor(epoch: int, warmup_epochs: int, total_epochs: int) -> float:
    """The official ``WarmupCosineSchedule`` factor for ``epoch`` (0-based, stepped once per epoch).

    ``e / W`` during warmup (so epoch 0 trains at lr 0), then ``0.5 * (1 + cos(pi * (e - W) / (T - W)))``
    clipped at 0.
    """
    if epoch < warmup_epochs:
        return epoch / max(1, warmup_epochs)
    progress = (epoch - warmup_epochs) / max(1, total_epochs - warmup_epochs)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Epoch-stepped LambdaLR with the warmup-cosine factor (or a constant factor of 1)."""
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: warmup_cosine_factor(epoch, config.warmup_epochs, total_epochs)
    )
