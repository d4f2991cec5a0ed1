"""Methods that add nothing and only choose which backbone tensors train: linear, full, partial-k, BitFit, LN tuning.

They share one file because each is a single name rule (the house rule is one file per method *family*).
"""

from __future__ import annotations

from lit_multimodal.vision.methods.base import Recipe, TuningMethod, head_names
from lit_multimodal.vision.methods.vpt import VPT_SGD

_FINAL_NORMS = ("backbone.norm.", "backbone.fc_norm.")


class Linear(TuningMethod):
    """Linear probing: the head alone trains (KMnP/vpt ``linear``)."""

    name = "linear"
    label = "Linear"
    recipe = VPT_SGD


class Full(TuningMethod):
    """Full fine-tuning: every parameter trains (KMnP/vpt ``end2end``; AdamW as the official)."""

    name = "full"
    label = "Full"
    recipe = Recipe("adamw", 1e-4, 1e-4, 64, "KMnP/vpt end2end uses AdamW; Adapter+ tunes full at 1e-4")

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """Everything."""
        return set(names)


class Partial(TuningMethod):
    """Partial-k: the last ``blocks`` blocks, the final norm(s) and the head (KMnP/vpt ``partial-k``).

    Args:
        blocks: ``k``, the number of trainable last blocks.
    """

    name = "partial"
    label = "Partial"
    recipe = VPT_SGD
    legacy_options = {"partial_blocks": "blocks"}

    def __init__(self, blocks: int = 1) -> None:
        self.blocks = blocks

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """The last ``blocks`` blocks, final norms and head."""
        indices = {int(n.split(".")[2]) for n in names if n.startswith("backbone.blocks.")}
        depth = max(indices) + 1 if indices else 0
        if not 1 <= self.blocks <= depth:
            raise ValueError(f"partial_blocks must be in 1..{depth} for this backbone; got {self.blocks}")
        tail = tuple(f"backbone.blocks.{i}." for i in range(depth - self.blocks, depth))
        return head_names(names) | {n for n in names if n.startswith(tail) or n.startswith(_FINAL_NORMS)}


class Bias(TuningMethod):
    """BitFit (Zaken et al. 2022; KMnP/vpt ``tinytl-bias``): every backbone bias and the head."""

    name = "bias"
    label = "Bias"
    recipe = VPT_SGD

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """Backbone biases and head."""
        return head_names(names) | {n for n in names if n.startswith("backbone.") and n.endswith(".bias")}


class LayerNormTuning(TuningMethod):
    """LayerNorm tuning: the affine parameters of every ``norm1``, ``norm2`` and the final norm(s), and the head.

    A name rule rather than peft's ``LNTuningConfig``: peft wraps each LayerNorm in an adapter layer
    (renaming its tensors) to train exactly the tensors this rule selects in place.
    """

    name = "layernorm"
    label = "LayerNorm"

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """Block and final LayerNorm affines, and the head."""
        norms = {n for n in names if n.startswith("backbone.blocks.") and n.split(".")[3] in ("norm1", "norm2")}
        return head_names(names) | norms | {n for n in names if n.startswith(_FINAL_NORMS)}
