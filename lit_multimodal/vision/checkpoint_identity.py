"""What an image-classifier checkpoint must share with the model that resumes or evaluates from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from lit_multimodal.references import is_reference
from lit_multimodal.vision.tuning import PROMPT_METHODS


def image_classifier_identity(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide an :class:`ImageClassifier`'s tensors and frozen weights (None: not known).

    Works on a checkpoint's ``hyper_parameters`` and on the ``model.init_args`` of a config alike. The
    backbone weights file is compared by name, so a run moved to another machine still resumes.
    """
    tuning = hparams.get("tuning")
    backbone = hparams.get("backbone") or {}
    backbone = backbone.as_dict() if hasattr(backbone, "as_dict") else dict(backbone)
    checkpoint = backbone.get("checkpoint")
    prompts = tuning in PROMPT_METHODS
    return {
        "tuning": tuning,
        "num_prompts": hparams.get("num_prompts") if prompts else None,
        "prompt_project": hparams.get("prompt_project") if prompts else None,
        "partial_blocks": hparams.get("partial_blocks") if tuning == "partial" else None,
        "num_classes": hparams.get("num_classes"),
        "backbone.arch": backbone.get("arch"),
        "backbone.img_size": backbone.get("img_size"),
        # A quickstart: reference is not known until resolved (a checkpoint saves the resolved path).
        "backbone.checkpoint": PurePath(str(checkpoint)).name if checkpoint and not is_reference(checkpoint) else None,
    }
