"""Parameter accounting behind the tuned percents, shared by every LightningModule (correct under ZeRO-3)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

__all__ = ["ParamCounts", "count_named_parameters", "param_numel"]


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts behind the two tuned percents.

    Attributes:
        total: every counted parameter (frozen backbone, what the tuning method added, heads/projections).
        trainable: parameters with ``requires_grad``.
        backbone: parameters of the pre-trained model alone (a ViT, an LLM, an encoder) without what the
            tuning method added.
        added: parameters the tuning method added (prompts, adapters, LoRA factors, projections, ...).
    """

    total: int
    trainable: int
    backbone: int
    added: int = 0

    @property
    def tuned_percent(self) -> float:
        """Trainable over all counted parameters, in percent: the official VPT repo's "tuned percent"."""
        return 100.0 * self.trainable / max(1, self.total)

    @property
    def tuned_percent_of_backbone(self) -> float:
        """Trainable parameters relative to the backbone alone, in percent (the papers' "Tuned / Total")."""
        return 100.0 * self.trainable / max(1, self.backbone)


def param_numel(param: nn.Parameter) -> int:
    """Elements of a parameter, in the model's own shape.

    Also under DeepSpeed ZeRO-3 (a partitioned parameter keeps its size in ``ds_numel``) and for bitsandbytes'
    4-bit weights (QLoRA), which pack two values per byte and keep the original shape in ``quant_state.shape``.
    """
    if hasattr(param, "ds_numel"):
        return int(param.ds_numel)
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    if shape is not None:
        return math.prod(shape)
    return param.numel()


def count_named_parameters(
    named: Iterable[tuple[str, nn.Parameter]],
    is_backbone: Callable[[str], bool] = lambda name: True,
    is_added: Callable[[str], bool] = lambda name: False,
) -> ParamCounts:
    """Counts ``(name, parameter)`` pairs (as ``named_parameters()`` gives them: shared tensors once).

    A parameter the tuning method added counts as added, never as backbone, whatever its name.

    Args:
        named: the parameters to count.
        is_backbone: whether a (non-added) parameter name belongs to the pre-trained backbone.
        is_added: whether a parameter name was added by the tuning method.
    """
    total = trainable = backbone = added = 0
    for name, param in named:
        size = param_numel(param)
        total += size
        trainable += size if param.requires_grad else 0
        if is_added(name):
            added += size
        elif is_backbone(name):
            backbone += size
    return ParamCounts(total=total, trainable=trainable, backbone=backbone, added=added)
