"""Layers shared by the adapter methods: the bottleneck adapter, QuickGELU and the initialisations the papers use."""

from __future__ import annotations

import math

import torch
from timm.layers import DropPath
from timm.models.vision_transformer import Block
from torch import nn

INITS = ("xavier", "lora_xavier", "lora_kaiming", "houlsby", "zero_up")


class QuickGELU(nn.Module):
    """``z * sigmoid(1.702 z)`` (Convpass, NOAH adapters)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """QuickGELU of ``z``."""
        return z * torch.sigmoid(1.702 * z)


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "quick_gelu": QuickGELU}


class Bottleneck(nn.Module):
    """``scale * (up(dropout(act(down(x)))))``: the bottleneck adapter without its residual.

    Args:
        dim: token width.
        hidden: bottleneck width ``d``.
        act: ``relu``, ``gelu`` or ``quick_gelu``.
        dropout: dropout after the activation.
        scale: fixed output scale ``s``.
        init: ``xavier`` (both weights xavier-uniform, biases N(0, 1e-6²); PETL_Vision ``xavier``),
            ``lora_xavier`` (down xavier, up and biases zero), ``lora_kaiming`` (down kaiming-uniform with
            a=sqrt(5), up and biases zero; AdaptFormer ``lora``) or ``houlsby`` (both weights truncated normal
            std 0.01 within ±0.02, zero biases; Adapter+).
    """

    def __init__(
        self, dim: int, hidden: int, act: str = "relu", dropout: float = 0.0, scale: float = 1.0, init: str = "xavier"
    ) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"adapter bottleneck width must be >= 1; got {hidden}")
        if act not in ACTIVATIONS:
            raise ValueError(f"adapter activation must be one of {', '.join(ACTIVATIONS)}; got {act!r}")
        self.down = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[act]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim)
        self.scale = scale
        init_bottleneck(self.down, self.up, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter output (no residual)."""
        return self.scale * self.up(self.dropout(self.act(self.down(x))))


@torch.no_grad()
def init_bottleneck(down: nn.Linear, up: nn.Linear, init: str) -> None:
    """Initialises a down/up projection pair by one of :data:`INITS` (see :class:`Bottleneck`)."""
    if init == "xavier":
        for layer in (down, up):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)
        return
    if init == "houlsby":
        for layer in (down, up):
            nn.init.trunc_normal_(layer.weight, std=0.01, a=-0.02, b=0.02)
            nn.init.zeros_(layer.bias)
        return
    if init == "lora_xavier":
        nn.init.xavier_uniform_(down.weight)
    elif init == "lora_kaiming":
        nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
    else:
        raise ValueError(f"adapter init must be one of {', '.join(INITS)}; got {init!r}")
    nn.init.zeros_(down.bias)
    nn.init.zeros_(up.weight)
    nn.init.zeros_(up.bias)


def retype_block(block: Block, cls: type[Block]) -> None:
    """Gives a timm ``Block`` a method's forward by switching its class (its tensors and names stay)."""
    if type(block) is not Block:
        raise ValueError(f"this tuning method needs timm's plain ViT Block; the backbone has {type(block).__name__}")
    block.__class__ = cls


def drop_path_or_identity(rate: float) -> nn.Module:
    """Timm's DropPath for ``rate > 0``, else Identity."""
    return DropPath(rate) if rate > 0 else nn.Identity()


def remove_hooks_of(module: nn.Module, owner: nn.Module) -> None:
    """Removes the forward (pre-)hooks of ``module`` that are bound methods of ``owner`` (or partials of them)."""
    for hooks in (module._forward_hooks, module._forward_pre_hooks):
        for key, hook in list(hooks.items()):
            func = getattr(hook, "func", hook)
            if getattr(func, "__self__", None) is owner:
                del hooks[key]


@torch.no_grad()
def affine_of(fn, dim: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, m)`` with ``fn(t) = M t + m`` for an affine map ``fn`` of ``dim``-vectors (rows of ``t``)."""
    eye = torch.eye(dim, dtype=like.dtype, device=like.device)
    offset = fn(torch.zeros(1, dim, dtype=like.dtype, device=like.device))
    return (fn(eye) - offset).T, offset.reshape(-1)
