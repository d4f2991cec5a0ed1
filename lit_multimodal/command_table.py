"""Every ``lit-mm`` command, once: its name, one line of help, and what it runs.

The console script's overview (:mod:`lit_multimodal.entry`, which must not import torch) and the full command
line (:mod:`lit_multimodal.cli`) both read :data:`COMMANDS`, so a new command is one new entry here (plus its
function). Nothing in this module imports torch, Lightning or jsonargparse; function targets are imported only
when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["COMMANDS", "Command", "command", "fit_epilog"]


@dataclass(frozen=True)
class Command:
    """One ``lit-mm`` command.

    Attributes:
        name: what the user types (``lit-mm <name> ...``).
        help: one line for the overview (``lit-mm --help``).
        target: what runs: a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``); or a plain
            function ``"package.module:function"`` whose signature and docstring jsonargparse turns into the
            command line; or, for a command group such as ``prepare``, a mapping ``subcommand -> "module:function"``.
        reads_fit_config: the function takes ``fit_config``: the command line's ``--config`` files and fit-level
            overrides (``--model.*``, ``--data.*``, ``--trainer.*``, ``--seed_everything``) are collected into it
            and parsed as ``lit-mm fit`` parses them.
    """

    name: str
    help: str
    target: str | Mapping[str, str]
    reads_fit_config: bool = False

    @property
    def lightning(self) -> bool:
        """Whether the command is a LightningCLI subcommand (``target`` is the Trainer method)."""
        return isinstance(self.target, str) and ":" not in self.target

    def load(self) -> Callable[..., Any] | dict[str, Callable[..., Any]]:
        """The function (or ``{subcommand: function}`` of a group) the command runs, imported now."""
        if self.lightning:
            raise TypeError(f"lit-mm {self.name} is a LightningCLI subcommand, not a function")
        if isinstance(self.target, str):
            return _import(self.target)
        return {name: _import(target) for name, target in self.target.items()}


def _import(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# The order is the order of a typical first session (the overview lists them so).
COMMANDS: tuple[Command, ...] = (
    Command("fit", "train a model from a config (then test the final weights and write result.json)", "fit"),
    Command("validate", "evaluate a checkpoint on the validation split", "validate"),
    Command("test", "evaluate a checkpoint on the test split", "test"),
    Command("predict", "class predictions of a checkpoint for a split or a folder of images (CSV/JSONL)", "predict"),
    Command(
        "prepare",
        "split files from an original FGVC archive (lit-mm prepare fgvc --help)",
        {"fgvc": "lit_multimodal.data.prepare_fgvc:prepare_fgvc"},
    ),
    Command("sweep", "search and seeded finals, local or SLURM", "lit_multimodal.sweeps.runner:sweep"),
    Command("report", "tables, results.csv and the tuned-%% plot of sweeps", "lit_multimodal.sweeps.report:report"),
    Command("embed", "ImageBind embedding cache for files", "lit_multimodal.multimodal.imagebind.commands:embed"),
    Command(
        "zeroshot",
        "files against text labels in ImageBind's shared space",
        "lit_multimodal.multimodal.imagebind.commands:zeroshot",
    ),
    Command(
        "export",
        "PandaGPT checkpoint to official delta, peft adapter or merged model",
        "lit_multimodal.multimodal.pandagpt.export:export",
        reads_fit_config=True,
    ),
    Command(
        "chat",
        "PandaGPT terminal chat about image/audio/video/... inputs",
        "lit_multimodal.multimodal.pandagpt.chat:chat",
        reads_fit_config=True,
    ),
    Command(
        "merge",
        "fold a reparameterisable tuning method (LoRA, DoRA, SSF, FacT, RepAdapter) into plain timm weights",
        "lit_multimodal.vision.methods.merge:merge",
    ),
    Command(
        "demo", "PandaGPT web demo (Gradio)", "lit_multimodal.multimodal.pandagpt.demo:demo", reads_fit_config=True
    ),
    Command(
        "serve",
        "PandaGPT behind an OpenAI-compatible HTTP API (127.0.0.1 by default)",
        "lit_multimodal.multimodal.pandagpt.serve:serve",
        reads_fit_config=True,
    ),
    # ``bind`` is ``fit`` of a BindModule config (docs/emergence.md).
    Command("bind", "train one ImageBind encoder against a frozen anchor modality (InfoNCE)", "fit"),
    Command(
        "bind-export",
        "a bound encoder merged into a complete ImageBind state dict",
        "lit_multimodal.multimodal.imagebind.bind.export:bind_export",
    ),
    Command(
        "bind-eval",
        "ImageBind zero-shot classification and retrieval R@k for any pair of modalities",
        "lit_multimodal.multimodal.imagebind.bind.evaluate:bind_eval",
    ),
    Command(
        "evaluate",
        "PandaGPT question answering per modality, with the emergent-transfer table",
        "lit_multimodal.multimodal.pandagpt.evaluate:evaluate",
        reads_fit_config=True,
    ),
    Command(
        "emergence",
        "the offline emergence quickstart: bind, train on image-text only, evaluate",
        "lit_multimodal.emergence:emergence",
    ),
)

_BY_NAME = {entry.name: entry for entry in COMMANDS}


def command(name: str | None) -> Command | None:
    """The table entry of ``name``, or None for an unknown name."""
    return _BY_NAME.get(name) if name else None


def fit_epilog() -> str:
    """The closing paragraph of ``lit-mm fit --help``: an example and the other commands."""
    others = ", ".join(entry.name for entry in COMMANDS if not entry.lightning)
    return (
        "Example: lit-mm fit --config configs/quickstart/vpt_deep.yaml. "
        f"Other commands: {others}; lit-mm --help lists them with one line each, lit-mm <command> --help "
        "gives the options of one."
    )


HELP_FLAGS = ("-h", "--help")


def overview_parser() -> argparse.ArgumentParser:
    """An argparse parser whose help lists every command (it parses nothing itself)."""
    parser = argparse.ArgumentParser(
        prog="lit-mm",
        description="Lightning experiments for visual prompt tuning (VPT) and PandaGPT.",
        epilog="Details of a command: lit-mm <command> --help. "
        "Example: lit-mm fit --config configs/quickstart/vpt_deep.yaml",
    )
    names = ",".join(entry.name for entry in COMMANDS)
    commands = parser.add_subparsers(title="commands", metavar="{" + names + "}")
    for entry in COMMANDS:
        commands.add_parser(entry.name, help=entry.help)
    return parser


def wants_overview(args: list[str]) -> bool:
    """Whether ``args`` ask for the command overview (no command, or only a help flag)."""
    return not args or (len(args) == 1 and args[0] in HELP_FLAGS)
