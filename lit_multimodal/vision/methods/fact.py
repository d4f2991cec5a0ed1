"""FacT-TT and FacT-TK (Jie & Deng, AAAI 2023): the weight increments of all layers as one factorised tensor.

``U`` (r x D) and ``V`` (D x r) are shared by every block; each frozen linear ``W`` of a block gets
``Delta W = s V core U`` added (``Delta`` reads the linear's input ``t``; dropout sits just before ``V``):

* TT: per block ``S_q, S_k, S_v, S_o`` (r x r), ``S1`` (4r x r) and ``S2`` (r x 4r); ``Delta W_q = s V S_q U``,
  ``Delta W_fc1[jD:(j+1)D] = s V S1[jr:(j+1)r] U`` and ``Delta W_fc2[:, jD:(j+1)D] = s V S2[:, jr:(j+1)r] U``.
* TK: a core ``C`` (r x r x r) and ``P`` (r x 12 L); block i uses ``T = C P[:, 12i:12i+4]`` for q, k, v, o
  and ``Tm = C P[:, 12i+4:12i+12]`` for the MLP, with PETL-ViT's reshapes copied exactly.

(JieShibo/PETL-ViT ``FacT/fact_tt.py``, ``fact_tk.py``.) The official code assumes an MLP of width 4 D; for
another integer ratio k every 4 above becomes k and ``P`` gets 4 + 2k columns per block. The
factors live once at ``backbone.fact`` (counted once); forward hooks on ``attn.qkv``, ``attn.proj``,
``mlp.fc1`` and ``mlp.fc2`` add the increments, and merging adds ``Delta W`` to the weights.
"""

from __future__ import annotations

import functools

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lit_multimodal.vision.methods.base import TuningMethod, plain_blocks
from lit_multimodal.vision.methods.layers import remove_hooks_of

SITES = ("qkv", "proj", "fc1", "fc2")


class FacTFactors(nn.Module):
    """The shared ``U``, ``V`` and the per-block cores; :meth:`forward` is the increment of one site.

    Args:
        dim: token width ``D``.
        depth: number of blocks ``L``.
        rank: ``r``.
        scale: ``s``.
        dropout: dropout before ``V``.
        kind: ``tt`` or ``tk``.
        ratio: MLP width over ``D`` (4 for ViTs).
    """

    def __init__(
        self, dim: int, depth: int, rank: int, scale: float, dropout: float, kind: str, ratio: int = 4
    ) -> None:
        super().__init__()
        self.dim, self.rank, self.scale, self.kind, self.ratio = dim, rank, scale, kind, ratio
        k = ratio
        self.u = nn.Linear(dim, rank, bias=False)
        self.v = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.v.weight)
        self.dropout = nn.Dropout(dropout)
        if kind == "tt":
            self.cores = nn.ModuleList(
                nn.ModuleDict(
                    {
                        "attn": nn.ModuleList(nn.Linear(rank, rank, bias=False) for _ in range(4)),
                        "mlp": nn.ModuleList(
                            [nn.Linear(rank, k * rank, bias=False), nn.Linear(k * rank, rank, bias=False)]
                        ),
                    }
                )
                for _ in range(depth)
            )
        else:
            self.core = nn.Parameter(torch.empty(rank, rank, rank))
            self.p = nn.Parameter(torch.empty(rank, (4 + 2 * k) * depth))
            nn.init.xavier_uniform_(self.core)
            nn.init.xavier_uniform_(self.p)

    def _out(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.v(self.dropout(h))

    def forward(self, index: int, site: str, t: torch.Tensor) -> torch.Tensor:
        """The increment ``t Delta W^T`` of ``site`` in block ``index`` for the site's input ``t``."""
        r, dim, k = self.rank, self.dim, self.ratio
        if site == "fc2":
            h = self.u(t.unflatten(-1, (k, dim))).flatten(-2)  # (..., k r)
            core = self.cores[index]["mlp"][1].weight if self.kind == "tt" else self._tk_mlp(index)[1]
            return self._out(h @ core.T)
        h = self.u(t)
        if site == "fc1":
            core = self.cores[index]["mlp"][0].weight.T if self.kind == "tt" else self._tk_mlp(index)[0]
            return self._out((h @ core).unflatten(-1, (k, r))).flatten(-2)
        if self.kind == "tt":
            mats = [m.weight.T for m in self.cores[index]["attn"]]
        else:
            width = 4 + 2 * k
            tensor = self.core @ self.p[:, width * index : width * index + 4]
            mats = [tensor[:, :, j] for j in range(4)]
        if site == "qkv":
            return torch.cat([self._out(h @ mats[j]) for j in range(3)], dim=-1)
        return self._out(h @ mats[3])

    def _tk_mlp(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        r, k = self.rank, self.ratio
        start = (4 + 2 * k) * index + 4
        tensor = self.core @ self.p[:, start : start + 2 * k]
        return tensor[:, :, :k].reshape(r, k * r), tensor[:, :, k:].reshape(r, k * r)

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor, *, index: int, site: str) -> torch.Tensor:
        """Forward hook: adds the increment to the site linear's output."""
        # Through __call__, so that module hooks (ZeRO-3 gathering) see the factors being used.
        return output + self(index, site, args[0])


def _sites(vit: VisionTransformer) -> list[tuple[int, str, nn.Linear]]:
    out = []
    for index, block in enumerate(plain_blocks(vit)):
        out += [(index, "qkv", block.attn.qkv), (index, "proj", block.attn.proj)]
        out += [(index, "fc1", block.mlp.fc1), (index, "fc2", block.mlp.fc2)]
    return out


class FacTTT(TuningMethod):
    """FacT-TT: tensor-train factorised increments of qkv, proj, fc1 and fc2; ``V = 0``, so the backbone at init.

    Defaults: PETL-ViT FacT (rank 8; scale per task in 0.01 ... 100, 0.1 here as PETL_Vision's README
    example; dropout 0.1; AdamW lr 1e-3, wd 1e-4).

    Args:
        rank: ``r``.
        scale: ``s``.
        dropout: dropout before ``V``.
    """

    name = "fact_tt"
    label = "FacT-TT"
    mergeable = True
    shared_across_blocks = True
    kind = "tt"

    def __init__(self, rank: int = 8, scale: float = 0.1, dropout: float = 0.1) -> None:
        self.rank = rank
        self.scale = scale
        self.dropout = dropout

    def attach(self, vit: VisionTransformer) -> None:
        """Adds the shared factors as ``fact`` and a hook on every site linear."""
        sites = _sites(vit)
        hidden = {linear.out_features for _, site, linear in sites if site == "fc1"}
        ratio = max(hidden) // vit.embed_dim
        if hidden != {ratio * vit.embed_dim}:
            raise ValueError(
                f"{self.name} needs MLPs of a width k x {vit.embed_dim}; this backbone has {sorted(hidden)}"
            )
        vit.fact = FacTFactors(vit.embed_dim, len(vit.blocks), self.rank, self.scale, self.dropout, self.kind, ratio)
        for index, site, linear in sites:
            linear.register_forward_hook(functools.partial(vit.fact.hook, index=index, site=site))

    @torch.no_grad()
    def merge(self, vit: VisionTransformer) -> None:
        """``W += Delta W`` per site (``Delta W^T`` is the increment of the identity matrix)."""
        fact = vit.fact.eval()
        for index, site, linear in _sites(vit):
            eye = torch.eye(linear.in_features, dtype=linear.weight.dtype, device=linear.weight.device)
            linear.weight.add_(fact(index, site, eye).T)
            remove_hooks_of(linear, fact)
        del vit.fact


class FacTTK(FacTTT):
    """FacT-TK: Tucker factorised increments (a shared core and per-layer factors); ``V = 0`` at init.

    Defaults: PETL_Vision README example (rank 32, scale 0.1); PETL-ViT picks rank 16 or 32 and the scale
    per task.

    Args:
        rank: ``r``.
        scale: ``s``.
        dropout: dropout before ``V``.
    """

    name = "fact_tk"
    label = "FacT-TK"
    kind = "tk"

    def __init__(self, rank: int = 32, scale: float = 0.1, dropout: float = 0.1) -> None:
        super().__init__(rank, scale, dropout)
