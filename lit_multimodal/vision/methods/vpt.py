"""VPT-Shallow and VPT-Deep (Jia et al., ECCV 2022): prompt tokens spliced after CLS, as KMnP/vpt.

The prompts live next to the backbone (``prompts.*``), and the classifier's forward splices them (see
:class:`~lit_multimodal.vision.prompts.VisualPrompts`); this file only declares the method.
"""

from __future__ import annotations

from timm.models.vision_transformer import VisionTransformer

from lit_multimodal.vision.backbones import patch_area
from lit_multimodal.vision.methods.base import Recipe, TuningMethod, head_names
from lit_multimodal.vision.prompts import VisualPrompts

# KMnP/vpt: SGD, base lr and weight decay from a per-task grid, lr scaled by batch/256 (docs/vpt.md).
VPT_SGD = Recipe("sgd", 0.25, 0.001, 128, "KMnP/vpt configs (grid; docs/vpt.md)")


class VPTShallow(TuningMethod):
    """VPT-Shallow: ``num_prompts`` tokens at the input, trained with the head.

    Args:
        num_prompts: prompt length ``p``.
        dropout: dropout on the prompts (paper: 0.0 for shallow).
        project_dim: prompt width projected to the token width by a Linear; -1 for none.
    """

    name = "vpt_shallow"
    label = "VPT-Shallow"
    recipe = VPT_SGD
    identity_at_init = False
    deep = False
    legacy_options = {"num_prompts": "num_prompts", "prompt_dropout": "dropout", "prompt_project": "project_dim"}

    def __init__(self, num_prompts: int = 50, dropout: float = 0.0, project_dim: int = -1) -> None:
        self.num_prompts = num_prompts
        self.dropout = dropout
        self.project_dim = project_dim

    def attach(self, vit: VisionTransformer) -> VisualPrompts:
        """Creates the prompts (the classifier splices them into the token sequence)."""
        return VisualPrompts(
            num_tokens=self.num_prompts,
            embed_dim=vit.embed_dim,
            depth=len(vit.blocks),
            deep=self.deep,
            patch_area=patch_area(vit),
            dropout=self.dropout,
            project_dim=self.project_dim,
        )

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """Prompts and head."""
        return head_names(names) | {n for n in names if n.startswith("prompts.")}


class VPTDeep(VPTShallow):
    """VPT-Deep: one prompt set per block (the previous block's prompt outputs are replaced).

    Args:
        num_prompts: prompt length ``p``.
        dropout: dropout on the prompts (paper: 0.1 for deep).
        project_dim: prompt width projected to the token width by a Linear; -1 for none.
    """

    name = "vpt_deep"
    label = "VPT-Deep"
    deep = True

    def __init__(self, num_prompts: int = 50, dropout: float = 0.1, project_dim: int = -1) -> None:
        super().__init__(num_prompts, dropout, project_dim)


class VPTDeepBias(VPTDeep):
    """VPT-Deep plus BitFit: prompts, every backbone bias and the head train (a combination in VPT's Table 6).

    Args:
        num_prompts: prompt length ``p``.
        dropout: dropout on the prompts.
        project_dim: prompt width projected to the token width by a Linear; -1 for none.
    """

    name = "vpt_deep_bias"
    label = "VPT-Deep + Bias"

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """Prompts, backbone biases and head."""
        biases = {n for n in names if n.startswith("backbone.") and n.endswith(".bias")}
        return super().trainable_names(names, added) | biases
