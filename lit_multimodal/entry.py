"""The ``lit-mm`` console entry point: the command overview without importing torch or Lightning.

``lit-mm``, ``lit-mm --help`` and ``lit-mm -h`` print every command with one line each, from this module
alone (the full CLI imports torch, Lightning and every model family: seconds and about 1 GB). Everything
else, including ``lit-mm <command> --help``, goes to :func:`lit_multimodal.cli.main`.
"""

from __future__ import annotations

import argparse
import sys

# (command, one line); the order is the order of a typical first session.
COMMANDS = (
    ("fit", "train a model from a config (then test the final weights and write result.json)"),
    ("validate", "evaluate a checkpoint on the validation split"),
    ("test", "evaluate a checkpoint on the test split"),
    ("predict", "class predictions of a checkpoint for a split or a folder of images (CSV/JSONL)"),
    ("prepare", "split files from an original FGVC archive (lit-mm prepare fgvc --help)"),
    ("sweep", "search and seeded finals, local or SLURM"),
    ("report", "tables, results.csv and the tuned-%% plot of sweeps"),
    ("embed", "ImageBind embedding cache for files"),
    ("zeroshot", "files against text labels in ImageBind's shared space"),
    ("export", "PandaGPT checkpoint to official delta, peft adapter or merged model"),
    ("chat", "PandaGPT terminal chat about image/audio/video/... inputs"),
    ("merge", "fold a reparameterisable tuning method (LoRA, DoRA, SSF, FacT, RepAdapter) into plain timm weights"),
    ("demo", "PandaGPT web demo (Gradio)"),
    ("serve", "PandaGPT behind an OpenAI-compatible HTTP API (127.0.0.1 by default)"),
    ("bind", "train one ImageBind encoder against a frozen anchor modality (InfoNCE)"),
    ("bind-export", "a bound encoder merged into a complete ImageBind state dict"),
    ("bind-eval", "ImageBind zero-shot classification and retrieval R@k for any pair of modalities"),
    ("evaluate", "PandaGPT question answering per modality, with the emergent-transfer table"),
    ("emergence", "the offline emergence quickstart: bind, train on image-text only, evaluate"),
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
    commands = parser.add_subparsers(title="commands", metavar="{" + ",".join(name for name, _ in COMMANDS) + "}")
    for name, line in COMMANDS:
        commands.add_parser(name, help=line)
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
