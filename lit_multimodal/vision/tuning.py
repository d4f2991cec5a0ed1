"""Tuning methods: which tensors of a :class:`ViTClassifier` train.

Every method shares one model and one forward pass; a method only decides which parameters keep
``requires_grad`` (and whether prompts exist, see :class:`~lit_multimodal.vision.prompts.VisualPrompts`).
The official equivalents (``MODEL.TRANSFER_TYPE`` in KMnP/vpt) are given per method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

TuningMethod = Literal["vpt_shallow", "vpt_deep", "linear", "full", "partial", "bias"]
TUNING_METHODS: tuple[str, ...] = ("vpt_shallow", "vpt_deep", "linear", "full", "partial", "bias")
PROMPT_METHODS: tuple[str, ...] = ("vpt_shallow", "vpt_deep")


def trainable_names(model: nn.Module, method: str, partial_blocks: int = 1) -> set[str]:
    """Names of the parameters that train under ``method``.

    Args:
        model: a :class:`~lit_multimodal.vision.classifier.ViTClassifier` (``backbone``, ``prompts``, ``head``).
        method: ``vpt_shallow``/``vpt_deep`` (official ``prompt``): prompts + head; ``linear``: head only;
            ``full`` (official ``end2end``): everything; ``partial`` (official ``partial-k``): the last
            ``partial_blocks`` blocks, the final norm(s) and the head; ``bias`` (BitFit, official
            ``tinytl-bias``): every bias of the backbone and the head.
        partial_blocks: ``k`` for ``partial``.

    Returns:
        The set of parameter names (as in ``model.named_parameters()``).
    """
    if method not in TUNING_METHODS:
        raise ValueError(f"tuning must be one of {', '.join(TUNING_METHODS)}; got {method!r}")
    names = [name for name, _ in model.named_parameters()]
    always = {n for n in names if n.startswith("head.")}
    if method in PROMPT_METHODS:
        return always | {n for n in names if n.startswith("prompts.")}
    if method == "linear":
        return always
    if method == "full":
        return set(names)
    if method == "bias":
        return always | {n for n in names if n.startswith("backbone.") and n.endswith(".bias")}
    depth = len(model.backbone.blocks)
    if not 1 <= partial_blocks <= depth:
        raise ValueError(f"partial_blocks must be in 1..{depth} for this backbone; got {partial_blocks}")
    tail = tuple(f"backbone.blocks.{i}." for i in range(depth - partial_blocks, depth))
    final_norms = ("backbone.norm.", "backbone.fc_norm.")
    return always | {n for n in names if n.startswith(tail) or n.startswith(final_norms)}


def freeze_all_but(model: nn.Module, names: set[str]) -> None:
    """Sets ``requires_grad`` to True exactly for ``names``."""
    unknown = names - {n for n, _ in model.named_parameters()}
    if unknown:
        raise KeyError(f"no such parameters: {sorted(unknown)}")
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts behind the two tuned percents.

    Attributes:
        total: every parameter of the model (frozen backbone, prompts and head).
        trainable: parameters with ``requires_grad``.
        backbone: parameters of the pre-trained backbone alone.
    """

    total: int
    trainable: int
    backbone: int

    @property
    def tuned_percent(self) -> float:
        """Trainable over all parameters, in percent: the official repo's "tuned percent"."""
        return 100.0 * self.trainable / self.total

    @property
    def tuned_percent_of_backbone(self) -> float:
        """Trainable parameters relative to the backbone alone, in percent (the papers' "Tuned / Total")."""
        return 100.0 * self.trainable / self.backbone


def _numel(param: nn.Parameter) -> int:
    # Under DeepSpeed ZeRO-3 a partitioned parameter has numel() == 0 and keeps its size in ds_numel.
    return int(getattr(param, "ds_numel", param.numel()))


def count_parameters(model: nn.Module) -> ParamCounts:
    """Counts a ViTClassifier's parameters; correct under ZeRO-3 partitioning."""
    total = trainable = backbone = 0
    for name, param in model.named_parameters():
        size = _numel(param)
        total += size
        trainable += size if param.requires_grad else 0
        backbone += size if name.startswith("backbone.") else 0
    return ParamCounts(total=total, trainable=trainable, backbone=backbone)
