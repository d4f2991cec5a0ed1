"""The interface every tuning method implements, and the registry that finds a method by name.

A method is a small object whose constructor arguments are the method's options (so ``--help`` lists
them per method). :class:`~lit_multimodal.vision.classifier.ViTClassifier` calls :meth:`TuningMethod.attach`
once on the headless timm ViT, then freezes every parameter but :meth:`TuningMethod.trainable_names`.
Parameters a method adds are counted as *added*, never as backbone.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

_REGISTRY: dict[str, type[TuningMethod]] = {}


@dataclass(frozen=True)
class Recipe:
    """A method's published default optimisation (what its configs ship; the CLI's ``model.optim`` rules).

    Attributes:
        optimizer: ``sgd`` or ``adamw``; ``model.optim.name: auto`` resolves to this.
        lr: learning rate at ``batch``, unscaled.
        weight_decay: weight decay.
        batch: the batch size the recipe was published with.
        source: where the numbers come from.
    """

    optimizer: str
    lr: float
    weight_decay: float
    batch: int
    source: str


# The recipe shared by the NOAH / PETL-ViT / RepAdapter / Adapter+ lineage: AdamW 1e-3, wd 1e-4, batch 64.
PETL_ADAMW = Recipe("adamw", 1e-3, 1e-4, 64, "NOAH, PETL-ViT (Convpass/FacT), RepAdapter, Adapter+ VTAB-1k scripts")


class TuningMethod:
    """Base class of the tuning methods.

    Subclasses set the class attributes, keep their options as constructor arguments and override
    :meth:`attach` (to inject modules), :meth:`trainable_names` (which parameters train) and, for methods
    that reparameterise into the backbone weights, :meth:`merge`.

    Attributes:
        name: registry key and the ``tuning:`` string of configs.
        label: row label of result tables and plots.
        recipe: default optimisation.
        mergeable: :meth:`merge` folds the method into plain timm weights.
        identity_at_init: the tuned model equals the frozen backbone before the first step.
        shared_across_blocks: the method owns parameters that every block reads (they live outside the
            blocks), so every block must run with autograd and in training mode.
        legacy_options: classifier options of the pre-plugin interface (``num_prompts``, ``partial_blocks``,
            ...) and the constructor argument each one sets.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    recipe: ClassVar[Recipe] = PETL_ADAMW
    mergeable: ClassVar[bool] = False
    identity_at_init: ClassVar[bool] = True
    shared_across_blocks: ClassVar[bool] = False
    # The classifier's pre-plugin options that map onto this method's constructor arguments.
    legacy_options: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
                raise ValueError(f"tuning method {cls.name!r} is registered twice")
            _REGISTRY[cls.name] = cls

    # -- what a method does ------------------------------------------------------------------------
    def attach(self, vit: VisionTransformer) -> nn.Module | None:
        """Injects the method's modules into ``vit`` (in place).

        Returns:
            A module the classifier keeps next to the backbone (VPT prompts), or None.
        """
        return None

    def trainable_names(self, names: list[str], added: set[str]) -> set[str]:
        """Parameter names (of the classifier) that train: by default the head and every added parameter.

        Args:
            names: every parameter name of the classifier (``backbone.*``, ``prompts.*``, ``head.*``).
            added: the names of the parameters :meth:`attach` added.
        """
        return head_names(names) | added

    def merge(self, vit: VisionTransformer) -> None:
        """Folds the method into the backbone weights and removes its modules, leaving a plain timm ViT."""
        raise NotImplementedError(f"tuning {self.name!r} does not merge into the backbone weights")

    # -- description -------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The constructor arguments as given (for hparams and result rows)."""
        params = inspect.signature(type(self).__init__).parameters
        return {k: _plain(getattr(self, k)) for k in params if k != "self" and hasattr(self, k)}

    def spec(self) -> dict[str, Any]:
        """A plain-dict description that :func:`build_method` turns back into this method."""
        return {"class_path": f"{type(self).__module__}.{type(self).__name__}", "init_args": self.options()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def head_names(names: Iterable[str]) -> set[str]:
    """The classification head's parameters."""
    return {n for n in names if n.startswith("head.")}


def plain_blocks(vit: VisionTransformer) -> list[Block]:
    """The ViT's blocks, insisting they are timm's plain pre-norm ``Block`` (the sites methods hook into)."""
    blocks = list(vit.blocks)
    for block in blocks:
        if type(block) is not Block:
            raise ValueError(
                f"this tuning method needs timm's plain ViT Block; the backbone has {type(block).__name__}"
            )
    return blocks


def list_methods() -> list[str]:
    """Names of every registered tuning method, in registration order."""
    _load_all()
    return list(_REGISTRY)


def method_class(name: str) -> type[TuningMethod]:
    """The class registered as ``name``; a ValueError naming the known methods otherwise."""
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"tuning must be one of {', '.join(_REGISTRY)}; got {name!r}")
    return _REGISTRY[name]


def build_method(tuning: str | dict[str, Any] | TuningMethod, **legacy: Any) -> TuningMethod:
    """A method instance from a name, a ``{class_path, init_args}`` dict or an instance.

    Args:
        tuning: the method. A name builds it with its defaults, overridden by those ``legacy`` options
            its constructor accepts.
        legacy: the classifier's pre-plugin options (``num_prompts``, ``prompt_dropout``,
            ``prompt_project``, ``partial_blocks``), mapped onto the constructor arguments of the same meaning.
    """
    if isinstance(tuning, TuningMethod):
        return tuning
    if isinstance(tuning, dict):
        path = str(tuning.get("class_path", ""))
        init_args = dict(tuning.get("init_args") or {})
        short = path.rsplit(".", 1)[-1]
        _load_all()
        matches = [cls for cls in _REGISTRY.values() if path in (cls.name, cls.__name__) or short == cls.__name__]
        if not matches:
            raise ValueError(f"tuning.class_path {path!r} is no registered tuning method ({', '.join(_REGISTRY)})")
        return matches[0](**init_args)
    cls = method_class(str(tuning))
    renames = cls.legacy_options
    return cls(**{renames[k]: v for k, v in legacy.items() if k in renames and v is not None})


def _load_all() -> None:
    # Importing the package registers every method file.
    import lit_multimodal.vision.methods  # noqa: F401


def build_classifier(
    tuning: str | dict[str, Any] | TuningMethod,
    num_classes: int = 100,
    backbone: Any = None,
    **options: Any,
) -> nn.Module:
    """A :class:`~lit_multimodal.vision.classifier.ViTClassifier` for one method, with random backbone weights.

    The entry point for scripts that iterate over :func:`list_methods` (benchmarks)::

        for name in list_methods():
            net = build_classifier(name, num_classes=100, backbone=BackboneConfig(arch="vit_base_patch16_224"))

    Args:
        tuning: a method name (its defaults; VPT gets 50 prompts as in configs), a ``{class_path,
            init_args}`` dict or a method instance.
        num_classes: head outputs.
        backbone: a :class:`~lit_multimodal.vision.backbones.BackboneConfig` (default: ViT-B/16 at 224 px).
        options: the method's constructor arguments, overriding its defaults (with a name only).
    """
    from lit_multimodal.vision.backbones import BackboneConfig, build_vit
    from lit_multimodal.vision.classifier import ViTClassifier

    if isinstance(tuning, str):
        tuning = method_class(tuning)(**options)
    return ViTClassifier(build_vit(backbone or BackboneConfig()), num_classes, tuning)
