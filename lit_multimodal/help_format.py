"""Help text without reST markup: docstrings are written for Sphinx, ``--help`` is read in a terminal.

jsonargparse turns Google-style docstrings into ``--help``; :class:`PlainHelpFormatter` shows
``:class:`~pkg.mod.Name``` as ``Name`` and ````code```` as ``code``.
"""

from __future__ import annotations

import re

from jsonargparse import DefaultHelpFormatter

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """``text`` with reST roles reduced to their target (the last dotted part after ``~``) and literals unquoted."""

    def role(match: re.Match[str]) -> str:
        target = match.group(1)
        short = match.group(0).split("`", 1)[1].startswith("~")
        return target.rsplit(".", 1)[-1] if short else target

    return _LITERAL.sub(r"\1", _ROLE.sub(role, text))


class PlainHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter with reST markup removed from descriptions and argument help."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _expand_help(self, action) -> str:
        return plain_text(super()._expand_help(action))


def plain_lightning_parser_class() -> type:
    """LightningCLI's parser class with :class:`PlainHelpFormatter` and ``prog`` ``lit-mm`` as defaults.

    As a class default (not only a constructor argument) it also reaches the parsers jsonargparse builds
    on the fly, e.g. for ``--model.help ImageClassifier``.
    """
    from lightning.pytorch.cli import LightningArgumentParser

    class PlainLightningArgumentParser(LightningArgumentParser):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("formatter_class", PlainHelpFormatter)
            kwargs.setdefault("prog", "lit-mm")
            super().__init__(*args, **kwargs)

    return PlainLightningArgumentParser
