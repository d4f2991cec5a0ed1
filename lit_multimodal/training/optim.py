"""Old home of the VPT optimisation recipe, now :mod:`lit_multimodal.vision.recipe`; kept so old imports work.

The recipe is VPT's, so it lives next to the image classifier; ``training/`` holds model-agnostic pieces only and
never imports ``vision/``. The names are therefore resolved on first use, not imported here.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_NEW_HOME = "lit_multimodal.vision.recipe"
_MOVED = (
    "OptimConfig",
    "build_optimizer",
    "build_scheduler",
    "check_optim",
    "scaled_lr",
    "warmup_cosine_factor",
)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__} moved to {_NEW_HOME}; import {name} from there", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_NEW_HOME), name)
