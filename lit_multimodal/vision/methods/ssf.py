"""SSF (Lian et al., NeurIPS 2022): a learned channel scale and shift after every operation.

``t <- gamma * t + beta`` after the patch embedding (E), ``norm1`` (N1), ``attn.qkv``, ``attn.proj``, ``norm2``
(N2), ``mlp.fc1`` (before the GELU), ``mlp.fc2`` and the final norm (F) (dongzelian/SSF
``models/vision_transformer.py``). Each site module owns its ``ssf`` (so ``blocks.0.attn.qkv.ssf.scale``) and
a forward hook applies it; merging folds it into that module's weights.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lit_multimodal.vision.methods.base import Recipe, TuningMethod, plain_blocks
from lit_multimodal.vision.methods.layers import remove_hooks_of


class ScaleShift(nn.Module):
    """``t * scale + shift`` over the last dim; scale ~ N(1, std²), shift ~ N(0, std²).

    Args:
        channels: size of the last dim.
        std: init standard deviation.
    """

    def __init__(self, channels: int, std: float = 0.02) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.empty(channels).normal_(1.0, std))
        self.shift = nn.Parameter(torch.empty(channels).normal_(0.0, std))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t * scale + shift``."""
        return t * self.scale + self.shift

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: rescales the site module's output."""
        return self(output)


def _sites(vit: VisionTransformer) -> list[tuple[nn.Module, int]]:
    sites: list[tuple[nn.Module, int]] = [(vit.patch_embed, vit.embed_dim)]
    for block in plain_blocks(vit):
        sites += [(block.norm1, vit.embed_dim), (block.attn.qkv, block.attn.qkv.out_features)]
        sites += [(block.attn.proj, vit.embed_dim), (block.norm2, vit.embed_dim)]
        sites += [(block.mlp.fc1, block.mlp.fc1.out_features), (block.mlp.fc2, vit.embed_dim)]
    final = vit.norm if isinstance(vit.norm, nn.LayerNorm) else vit.fc_norm
    sites.append((final, vit.num_features))
    return sites


@torch.no_grad()
def _fold(module: nn.Module, ssf: ScaleShift) -> None:
    gamma, beta = ssf.scale, ssf.shift
    if module.__class__.__name__ == "PatchEmbed":
        if not isinstance(module.norm, nn.Identity):
            raise ValueError("ssf merge needs a patch embedding without its own norm")
        module, shape = module.proj, (-1, 1, 1, 1)
    else:
        shape = (-1, 1) if isinstance(module, nn.Linear) else (-1,)
    if module.weight is None:
        raise ValueError(f"ssf merge needs an affine {type(module).__name__}")
    bias = module.bias if module.bias is not None else torch.zeros_like(beta)
    module.weight.mul_(gamma.reshape(shape))
    new_bias = gamma * bias + beta
    if module.bias is None:
        module.bias = nn.Parameter(new_bias)
    else:
        module.bias.copy_(new_bias)


class SSF(TuningMethod):
    """SSF: scale and shift after every operation; random N(1, 0.02) / N(0, 0.02) init (not identity at init).

    Defaults: dongzelian/SSF VTAB scripts (AdamW, no weight decay on the 1-D scale/shift, lr per task
    1e-3 ... 5e-2; 5e-3 here as for DTD).

    Args:
        init_std: standard deviation of the scale and shift initialisation.
    """

    name = "ssf"
    label = "SSF"
    identity_at_init = False
    mergeable = True
    recipe = Recipe("adamw", 5e-3, 5e-5, 64, "dongzelian/SSF train_scripts/vit/vtab (per task; dtd)")

    def __init__(self, init_std: float = 0.02) -> None:
        self.init_std = init_std

    def attach(self, vit: VisionTransformer) -> None:
        """Gives every site module an ``ssf`` and a hook applying it to the module's output."""
        for module, channels in _sites(vit):
            module.ssf = ScaleShift(channels, self.init_std)
            module.register_forward_hook(module.ssf.hook)

    def merge(self, vit: VisionTransformer) -> None:
        """``W' = gamma W``, ``b' = gamma b + beta`` per site (the patch conv by output channel)."""
        for module, _ in _sites(vit):
            ssf = module.ssf
            _fold(module, ssf)
            remove_hooks_of(module, ssf)
            del module.ssf
