"""Which tensors of a :class:`ViTClassifier` train, and the parameter accounting behind the tuned percents.

The methods themselves are plugins in :mod:`lit_multimodal.vision.methods` (one file per method behind
:class:`~lit_multimodal.vision.methods.TuningMethod`); this module keeps the name-level helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lit_multimodal.vision.methods import build_method, list_methods

TUNING_METHODS: tuple[str, ...] = tuple(list_methods())
PROMPT_METHODS: tuple[str, ...] = ("vpt_shallow", "vpt_deep", "vpt_deep_bias")


def trainable_names(model: nn.Module, method: str, partial_blocks: int = 1) -> set[str]:
    """Names of the parameters of ``model`` (a classifier) that train under the method named ``method``.

    Args:
        model: a :class:`~lit_multimodal.vision.classifier.ViTClassifier` (``backbone``, ``prompts``, ``head``).
        method: a registered method name.
        partial_blocks: ``k`` for ``partial``.
    """
    names = [name for name, _ in model.named_parameters()]
    added = set(getattr(model, "added_names", ()))
    return build_method(method, partial_blocks=partial_blocks).trainable_names(names, added)


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
        total: every parameter of the model (frozen backbone, added method parameters and head).
        trainable: parameters with ``requires_grad``.
        backbone: parameters of the pre-trained backbone alone (what the method added is not backbone).
        added: parameters the tuning method added (prompts, adapters, LoRA factors, ...).
    """

    total: int
    trainable: int
    backbone: int
    added: int = 0

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
    """Counts a ViTClassifier's parameters; correct under ZeRO-3 partitioning.

    A tensor counts as backbone when it lives under ``backbone.`` and the tuning method did not add it
    (``model.added_names``); shared tensors count once.
    """
    added_names = set(getattr(model, "added_names", ()))
    total = trainable = backbone = added = 0
    for name, param in model.named_parameters():
        size = _numel(param)
        total += size
        trainable += size if param.requires_grad else 0
        if name in added_names:
            added += size
        elif name.startswith("backbone."):
            backbone += size
    return ParamCounts(total=total, trainable=trainable, backbone=backbone, added=added)
