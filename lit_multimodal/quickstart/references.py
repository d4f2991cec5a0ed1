"""Resolving ``quickstart:`` references: each one replaced by the path of the artefact it names, built once.

``lit-mm`` calls :func:`resolve_references` on the parsed config before it builds anything (and the PandaGPT
commands on the model settings they build from), so production code only ever sees paths. Python code that
builds a model from a config with such values calls it too.

The references are:

- ``quickstart:digits0-4`` (a backbone ``checkpoint``): the quickstart ViT fully trained on digits 0–4, for the
  geometry of the backbone it sits in (``arch``, ``img_size``, ``pooling``, ``overrides``).
- ``quickstart:tiny-llama`` (an ``llm_path`` or ``tokenizer``): the quickstart's tiny LLaMA folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from lit_multimodal.multimodal.pandagpt.llm_folder import check_llm_folder
from lit_multimodal.quickstart.backbone import ensure_quickstart_backbone
from lit_multimodal.quickstart.pandagpt import QUICKSTART_LLM, ensure_quickstart_llm
from lit_multimodal.references import SCHEME, is_reference
from lit_multimodal.training.errors import SettingError
from lit_multimodal.vision.backbones import BackboneConfig

__all__ = [
    "QUICKSTART_BACKBONE",
    "QUICKSTART_LLM",
    "REFERENCES",
    "resolve_llm_path",
    "resolve_reference",
    "resolve_references",
]

QUICKSTART_BACKBONE = "quickstart:digits0-4"


def _plain(value: Any) -> Any:
    return value.as_dict() if hasattr(value, "as_dict") else value


def _digits_backbone(context: Mapping[str, Any]) -> str:
    names = {f.name for f in dataclasses.fields(BackboneConfig)} - {"checkpoint"}
    geometry = {key: _plain(value) for key, value in context.items() if key in names}
    return str(ensure_quickstart_backbone(BackboneConfig(**geometry, checkpoint=QUICKSTART_BACKBONE)))


def _tiny_llama(context: Mapping[str, Any]) -> str:
    return str(ensure_quickstart_llm())


# name -> (the config keys it may stand in, what it is, the builder given the mapping that holds it)
REFERENCES: dict[str, tuple[tuple[str, ...], str, Callable[[Mapping[str, Any]], str]]] = {
    "digits0-4": (("checkpoint",), "a backbone checkpoint", _digits_backbone),
    "tiny-llama": (("llm_path", "tokenizer"), "a base LLM folder", _tiny_llama),
}


def resolve_reference(value: str, key: str | None = None, context: Mapping[str, Any] | None = None) -> str:
    """The path behind one ``quickstart:`` reference (built on first use); any other value is returned as is.

    Args:
        value: the config value.
        key: its dotted config key, for messages; when given, its last part must be a key the reference may
            stand in.
        context: the mapping that holds the value (the backbone settings for ``quickstart:digits0-4``).

    Raises:
        SettingError: an unknown reference, or one in a key it cannot stand in.
    """
    if not is_reference(value):
        return value
    name = value[len(SCHEME) :]
    if name not in REFERENCES:
        known = ", ".join(SCHEME + known for known in REFERENCES)
        raise SettingError(f"{key or 'value'} is {value!r}; expected a path or a quickstart reference: {known}")
    keys, what, build = REFERENCES[name]
    if key is not None and key.rpartition(".")[2] not in keys:
        raise SettingError(f"{key} is {value!r}, which is {what}; it can only stand in a key named {' or '.join(keys)}")
    return build(_plain(context) if context is not None else {})


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, list):
        return list(enumerate(node))
    if hasattr(node, "as_dict"):  # a jsonargparse Namespace: its direct attributes
        return list(vars(node).items())
    return []


def _set(node: Any, key: Any, value: Any) -> None:
    if isinstance(node, (Mapping, list)):
        node[key] = value
    else:
        setattr(node, key, value)


def resolve_references(config: Any, prefix: str = "") -> Any:
    """Replaces, in place, every ``quickstart:`` string in ``config`` by the path it names; returns ``config``.

    Args:
        config: a parsed config (jsonargparse ``Namespace``), a dict or a list, nested in any way.
        prefix: the dotted key of ``config`` itself, for messages.

    Raises:
        SettingError: an unknown reference, or one in a key it cannot stand in (the message names the key).
    """
    for key, value in _children(config):
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if is_reference(value):
            _set(config, key, resolve_reference(value, dotted, config))
        elif _children(value):
            resolve_references(value, dotted)
    return config


def resolve_llm_path(path: str) -> str:
    """``quickstart:tiny-llama`` → the cached tiny LLaMA folder (built on first use); other paths are checked.

    Raises:
        SettingError: an unknown ``quickstart:`` name.
        FileNotFoundError: the folder does not exist or holds no ``config.json``; the message names it.
    """
    return check_llm_folder(resolve_reference(path, "model.llm_path"))
