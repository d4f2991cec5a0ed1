"""The ``lit-mm`` console entry point: the command overview without importing torch or Lightning.

``lit-mm``, ``lit-mm --help`` and ``lit-mm -h`` print every command with one line each, from the command table
(:mod:`lit_multimodal.command_table`) alone (the full CLI imports torch, Lightning and every model family: seconds
and about 1 GB). Everything else, including ``lit-mm <command> --help``, goes to :func:`lit_multimodal.cli.main`.
"""

from __future__ import annotations

import sys

from lit_multimodal.command_table import HELP_FLAGS, overview_parser, wants_overview

__all__ = ["HELP_FLAGS", "main", "overview_parser", "wants_overview"]


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
