"""``quickstart:`` references: config values that name an artefact the quickstart builds on first use.

A config may say ``checkpoint: quickstart:digits0-4`` or ``llm_path: quickstart:tiny-llama`` instead of a path.
``lit-mm`` replaces each such value by the real path (building and caching the artefact) before anything is
built: :func:`lit_multimodal.quickstart.references.resolve_references`. Production code only checks that what
it is given is a path, with :func:`require_resolved`, so that a reference reaching it from Python code that did
not resolve it fails with a message saying how to resolve it.
"""

from __future__ import annotations

from typing import Any

from lit_multimodal.training.errors import SettingError

__all__ = ["SCHEME", "UnresolvedReference", "is_reference", "require_resolved"]

SCHEME = "quickstart:"


class UnresolvedReference(SettingError):
    """A ``quickstart:`` reference reached code that needs a path: nothing resolved it first."""


def is_reference(value: Any) -> bool:
    """Whether ``value`` is a ``quickstart:`` reference."""
    return isinstance(value, str) and value.startswith(SCHEME)


def require_resolved(value: Any, key: str) -> None:
    """Raises :class:`UnresolvedReference` naming ``key`` when ``value`` is a ``quickstart:`` reference.

    Args:
        value: the setting's value.
        key: its config key, for the message (``model.llm_path``).
    """
    if is_reference(value):
        raise UnresolvedReference(
            f"{key} is {value!r}, a quickstart reference that was not resolved to a path; `lit-mm` resolves it "
            "before building anything, and Python code calls "
            "lit_multimodal.quickstart.references.resolve_references(config) (or resolve_reference(value)) first"
        )
