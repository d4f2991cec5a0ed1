"""The function commands of binding and evaluation, for the ``lit-mm`` command table.

``lit-mm bind`` itself is ``lit-mm fit`` of a :class:`BindModule` config (LightningCLI); these are plain functions.
"""

from __future__ import annotations

from typing import Any

from .evaluate import bind_eval
from .export import bind_export


def _load_signatures() -> dict[str, Any]:
    """The commands with their real signatures and docstrings (jsonargparse builds ``--help`` from them)."""
    from lit_multimodal.multimodal.pandagpt.evaluate import evaluate

    from .quickstart import emergence

    return {"bind-export": bind_export, "bind-eval": bind_eval, "evaluate": evaluate, "emergence": emergence}


BIND_FUNCTIONS: dict[str, Any] = _load_signatures()
