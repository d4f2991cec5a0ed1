"""ImageBind's heads (token selection + projection) and postprocessors (normalise, logit scales)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LearnableLogitScaling", "Normalize", "SelectEOSAndProject", "SelectElement"]


class SelectElement(nn.Module):
    """Selects token ``index`` of (B, L, D).

    Args:
        index: Token position.
    """

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        """Selects the token.

        Args:
            x: Tokens (B, L, D).

        Returns:
            (B, D).
        """
        return x[:, self.index, ...]


class SelectEOSAndProject(nn.Module):
    """Text head: token at ``seq_len`` (the EOT position) of each row, then ``proj``.

    Args:
        proj: Module applied to the selected tokens (LayerNorm, Linear).
    """

    def __init__(self, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: Tensor, seq_len: Tensor) -> Tensor:
        """Selects and projects.

        Args:
            x: Tokens (B, L, D).
            seq_len: Position per row (B,).

        Returns:
            (B, out_dim).
        """
        return self.proj(x[torch.arange(x.shape[0], device=x.device), seq_len])


class Normalize(nn.Module):
    """L2 normalisation along ``dim``.

    Args:
        dim: Dimension to normalise.
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Normalises.

        Args:
            x: Input.

        Returns:
            ``x / ||x||``.
        """
        return F.normalize(x, dim=self.dim, p=2)


class LearnableLogitScaling(nn.Module):
    """Multiplies by ``min(exp(log_logit_scale), max_logit_scale)`` (official ImageBind).

    ``log_logit_scale`` is a Parameter when learnable, otherwise a persistent buffer.

    Args:
        logit_scale_init: Initial scale (not its log).
        learnable: Whether the scale is a parameter.
        max_logit_scale: Upper clamp of the scale.
    """

    def __init__(
        self, logit_scale_init: float = 1 / 0.07, learnable: bool = True, max_logit_scale: float = 100.0
    ) -> None:
        super().__init__()
        self.max_logit_scale = max_logit_scale
        self.logit_scale_init = logit_scale_init
        self.learnable = learnable
        log_logit_scale = torch.full((), math.log(logit_scale_init))
        if learnable:
            self.log_logit_scale = nn.Parameter(log_logit_scale)
        else:
            self.register_buffer("log_logit_scale", log_logit_scale)

    def forward(self, x: Tensor) -> Tensor:
        """Scales.

        Args:
            x: Input.

        Returns:
            Scaled input.
        """
        return torch.clip(self.log_logit_scale.exp(), max=self.max_logit_scale) * x
