"""Visual Prompt Tuning prompts (Jia et al., ECCV 2022), exactly as the official KMnP/vpt code.

Token layout with ``p`` prompts: ``[CLS, P_1..P_p, patch_1..patch_N]``. Prompts are spliced in *after* the
position embedding (they get none). VPT-Deep owns one prompt set per block: the set of block 0 is spliced
in, and before every later block ``i`` the ``p`` tokens at positions ``1..p`` (the previous block's prompt
outputs) are discarded and replaced by set ``i``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class VisualPrompts(nn.Module):
    """Learnable prompt tokens for VPT-Shallow (one set) or VPT-Deep (one set per block).

    Args:
        num_tokens: prompt length ``p``.
        embed_dim: the ViT's token width ``D``.
        depth: number of transformer blocks ``L``.
        deep: one prompt set per block (VPT-Deep) instead of one at the input (VPT-Shallow).
        patch_area: pixels per patch, used by the official initialisation
            ``U(-v, v)`` with ``v = sqrt(6 / (3 * patch_area + prompt_dim))``.
        dropout: dropout on the prompts at every insertion point.
        project_dim: if > 0 the prompts live in this width and pass through a Linear to ``D``
            (the official ``PROMPT.PROJECT`` option; unused in the paper).
    """

    def __init__(
        self,
        num_tokens: int,
        embed_dim: int,
        depth: int,
        deep: bool,
        patch_area: int,
        dropout: float = 0.0,
        project_dim: int = -1,
    ) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_prompts must be >= 1, got {num_tokens}")
        self.num_tokens = num_tokens
        self.deep = deep
        prompt_dim = project_dim if project_dim > 0 else embed_dim
        bound = math.sqrt(6.0 / float(3 * patch_area + prompt_dim))
        self.prompt_embeddings = nn.Parameter(torch.empty(1, num_tokens, prompt_dim).uniform_(-bound, bound))
        if deep:
            self.deep_prompt_embeddings = nn.Parameter(
                torch.empty(depth - 1, num_tokens, prompt_dim).uniform_(-bound, bound)
            )
        else:
            self.register_parameter("deep_prompt_embeddings", None)
        if project_dim > 0:
            self.prompt_proj: nn.Module = nn.Linear(project_dim, embed_dim)
            nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode="fan_out")
        else:
            self.prompt_proj = nn.Identity()
        self.prompt_dropout = nn.Dropout(dropout)

    def _tokens(self, raw: torch.Tensor, batch: int) -> torch.Tensor:
        return self.prompt_dropout(self.prompt_proj(raw)).expand(batch, -1, -1)

    def insert(self, tokens: torch.Tensor) -> torch.Tensor:
        """Splices the input-level prompts after CLS: ``(B, 1+N, D) -> (B, 1+p+N, D)``."""
        prompts = self._tokens(self.prompt_embeddings, tokens.shape[0]).to(tokens.dtype)
        return torch.cat([tokens[:, :1], prompts, tokens[:, 1:]], dim=1)

    def replace(self, tokens: torch.Tensor, block_index: int) -> torch.Tensor:
        """Before block ``block_index >= 1`` of VPT-Deep: positions ``1..p`` get that block's prompts."""
        raw = self.deep_prompt_embeddings[block_index - 1].unsqueeze(0)
        prompts = self._tokens(raw, tokens.shape[0]).to(tokens.dtype)
        return torch.cat([tokens[:, :1], prompts, tokens[:, 1 + self.num_tokens :]], dim=1)
