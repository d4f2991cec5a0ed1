"""Which tensors of a :class:`ViTClassifier` train, and the parameter accounting behind the tuned percents.

The methods themselves are plugins in :mod:`lit_multimodal.vision.methods` (one file per method behind
:class:`~lit_multimodal.vision.methods.TuningMethod`); this module keeps the name-level helpers. The counting itself
(:class:`ParamCounts`, ZeRO-3 aware) is shared by every module: :mod:`lit_multimodal.training.param_counts`.
"""

from __future__ import annotations

from torch import nn

from lit_multimodal.training.param_counts import ParamCounts, count_named_parameters
from lit_multimodal.vision.methods import build_method, list_methods

__all__ = ["PROMPT_METHODS", "TUNING_METHODS", "ParamCounts", "count_parameters", "freeze_all_but", "trainable_names"]

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


def count_parameters(model: nn.Module) -> ParamCounts:
    """Counts a ViTClassifier's parameters; correct under ZeRO-3 partitioning.

    A tensor counts as backbone when it lives under ``backbone.`` and the tuning method did not add it
    (``model.added_names``); shared tensors count once.
    """
    added_names = set(getattr(model, "added_names", ()))
    return count_named_parameters(
        model.named_parameters(),
        is_backbone=lambda name: name.startswith("backbone."),
        is_added=lambda name: name in added_names,
    )
