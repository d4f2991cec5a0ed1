"""The ``lit-mm`` console entry point: the command overview without importing torch or Lightning.

``lit-mm``, ``lit-mm --help`` and ``lit-mm -h`` print every command with one line each, from the command table
(:mod:`lit_multimodal.command_table`) alone (the full CLI imports torch, Lightning and every model family: seconds
and about 1 GB). Everything else, including ``lit-mm <command> --help``, goes to :func:`lit_multimodal.cli.main`.
"""

from __future__ import annotations

import argparse
import sys

from lit_multimodal.command_table import COMMANDS

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


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-mm``: the overview, or the full command line of :mod:`lit_multimodal.cli`."""
    args = sys.argv[1:] if argv is None else list(argv)
    if wants_overview(args):
        overview_parser().print_help()
        raise SystemExit(0 if args else 2)
    from lit_multimodal.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
