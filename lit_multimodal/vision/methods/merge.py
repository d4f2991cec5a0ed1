"""Folding a reparameterisable method into plain timm weights, and ``lit-mm merge`` for classifier checkpoints.

LoRA, DoRA, SSF, FacT-TT/TK and RepAdapter are linear (or affine) in the frozen weights at inference, so
after :meth:`TuningMethod.merge` the classifier is a plain timm ``VisionTransformer`` with its usual keys
plus ``head.weight``/``head.bias``: inference costs exactly what the backbone costs. Methods that add
nothing (linear, bias, LayerNorm tuning, partial, full) are plain already.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

PLAIN_METHODS = ("linear", "full", "partial", "bias", "layernorm")


def merged_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """A plain timm classifier state dict (backbone keys and ``head.*``) of a :class:`ViTClassifier`.

    The classifier itself is left untouched (a copy is merged).

    Raises:
        ValueError: for a method that neither merges nor is plain (VPT, adapters).
    """
    method = net.method
    if not method.mergeable and method.name not in PLAIN_METHODS:
        raise ValueError(
            f"tuning {method.name!r} does not merge into the backbone weights; mergeable methods: LoRA, DoRA, SSF, "
            "FacT-TT/TK, RepAdapter (and the methods that add nothing)"
        )
    merged = copy.deepcopy(net).eval()
    if method.mergeable:
        merged.method.merge(merged.backbone)
    state = {k: v.detach().cpu().contiguous() for k, v in merged.backbone.state_dict().items()}
    state.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in merged.head.state_dict().items()})
    return state


def merge(ckpt: str, out: str) -> dict[str, Any]:
    """Writes a classifier checkpoint as one plain timm state dict (``.safetensors``) with the method merged.

    The result loads into ``timm.create_model(arch, num_classes=C)`` with the training run's geometry
    (``backbone`` settings stored in the checkpoint) and gives the same logits as the tuned model.

    Args:
        ckpt: a ``lit-mm fit`` checkpoint of ``lit_multimodal.vision.ImageClassifier`` (trainable tensors
            only; the frozen backbone is read again from ``model.backbone.checkpoint``).
        out: the ``.safetensors`` file to write.

    Returns:
        The written path, the method and the tensor count.
    """
    from safetensors.torch import save_file

    from lit_multimodal.vision.module import ImageClassifier

    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"merge: no checkpoint file {path}")
    module = ImageClassifier.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
    state = merged_state_dict(module.net)
    target = Path(out).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    cfg = module.backbone_config
    metadata = {"arch": cfg.arch, "img_size": str(cfg.img_size), "pooling": cfg.pooling, "tuning": module.tuning}
    save_file(state, str(target), metadata=metadata)
    return {"out": str(target), "tuning": module.tuning, "tensors": len(state)}
