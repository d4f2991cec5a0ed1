"""Old home of PandaGPT's schedule, now :mod:`lit_multimodal.multimodal.pandagpt.schedule`; kept so old imports work.

The schedule is PandaGPT's, so it lives next to its module; ``training/`` holds model-agnostic pieces only and never
imports ``multimodal/``. The names are therefore resolved on first use, not imported here.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_NEW_HOME = "lit_multimodal.multimodal.pandagpt.schedule"
_MOVED = ("build_warmup_decay_scheduler", "pandagpt_lr_factor", "pandagpt_warmup_steps", "update_lr_factor")


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__} moved to {_NEW_HOME}; import {name} from there", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_NEW_HOME), name)
