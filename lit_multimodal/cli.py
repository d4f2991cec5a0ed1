"""The ``lit-mm`` command line: runs the entries of the command table.

Every command is one entry of :data:`lit_multimodal.command_table.COMMANDS`. ``fit``/``validate``/``test``/
``predict`` (and ``bind``, which is ``fit`` of a binding config) run :class:`~lit_multimodal.fit_config.LitMMCLI`:
``lit-mm fit --config configs/vpt_deep_cub.yaml`` builds the model and data chosen by ``class_path`` in the YAML,
trains, tests the last-epoch weights and writes ``result.json`` into the run directory. The other commands are
plain functions, imported only when their command runs, whose signatures and docstrings jsonargparse turns into
the command line. Commands that read a fit config (``export``, ``chat``, ``demo``, ``serve``, ``evaluate``) take
``--config`` files and fit overrides exactly as ``fit`` does (:func:`split_fit_arguments`).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
from argparse import ArgumentError
from typing import Any

from lit_multimodal.command_table import Command, command, overview_parser, wants_overview
from lit_multimodal.config_errors import explain
from lit_multimodal.errors import error_message, find_user_error
from lit_multimodal.runtime import configure_threads, filter_known_warnings

__all__ = ["checkpoint_option_alias", "main", "split_fit_arguments"]

# Options of ``lit-mm fit`` that a fit-config command passes on: config files and fit-level overrides.
_CONFIG_OPTIONS = ("-c", "--config", "--fit_config")
_FIT_OPTION = re.compile(r"^--(model|data|trainer)(\.[\w.]+)?$|^--seed_everything$")


def __getattr__(name: str) -> Any:
    """``from lit_multimodal.cli import LitMMCLI`` keeps working (it lives in :mod:`lit_multimodal.fit_config`)."""
    if name == "LitMMCLI":
        from lit_multimodal.fit_config import LitMMCLI

        return LitMMCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def split_fit_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """``(fit arguments, the rest)`` of a fit-config command's arguments.

    ``--config F`` (also ``-c F``, ``--fit_config F``, ``--config=F``) and every fit-level option (``--model.*``,
    ``--data.*``, ``--trainer.*``, ``--seed_everything``) with its value go to the first list, in order, as
    ``lit-mm fit`` would take them; the command's own options stay in the second.
    """
    fit: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _CONFIG_OPTIONS or _FIT_OPTION.match(name):
            option = "--config" if name in _CONFIG_OPTIONS else name
            if eq:
                fit.append(f"{option}={value}")
            elif i + 1 < len(args):
                fit += [option, args[i + 1]]
                i += 1
            else:
                fit.append(option)  # the fit parser reports the missing value
        else:
            rest.append(arg)
        i += 1
    return fit, rest


def _run_function_command(entry: Command, args: list[str]) -> None:
    """Runs a function command (``lit-mm prepare|sweep|report|chat ...``) through jsonargparse's ``auto_cli``."""
    from jsonargparse import auto_cli

    from lit_multimodal.help_format import PlainHelpFormatter

    component = entry.load()
    if entry.reads_fit_config:
        # jsonargparse keeps --config for its own config files: the fit arguments travel as one JSON list.
        fit_args, rest = split_fit_arguments(args[1:])
        args = [args[0], *rest, *([f"--fit_config={json.dumps(fit_args)}"] if fit_args else [])]
    if callable(component):
        args = checkpoint_option_alias(args, inspect.signature(component).parameters)
    # Errors come back as exceptions (main prints one paragraph); no silent prefix matching of options.
    try:
        summary = auto_cli(
            {entry.name: component},
            args=args,
            as_positional=False,
            exit_on_error=False,
            allow_abbrev=False,
            formatter_class=PlainHelpFormatter,
            prog="lit-mm",
        )
    except ArgumentError as err:
        function = component.get(args[1]) if isinstance(component, dict) and len(args) > 1 else component
        if callable(function) and not hasattr(err, "valid_keys"):  # for main's "did you mean"
            err.valid_keys = [name for name in inspect.signature(function).parameters if name != "self"]
        raise
    if summary is not None:
        print(json.dumps(summary, indent=2, default=str))


def checkpoint_option_alias(args: list[str], parameters: Any) -> list[str]:
    """``--ckpt_path`` (Lightning's name, used by fit/validate/test/predict) for every command taking a checkpoint.

    A command whose parameter is ``ckpt_path`` still accepts the former ``--ckpt`` with a deprecation
    message; one whose parameter is still ``ckpt`` accepts ``--ckpt_path`` as well.
    """
    if "ckpt_path" in parameters:
        old, new = "--ckpt", "--ckpt_path"
        if any(re.match(r"^--ckpt(=|$)", arg) for arg in args):
            print("warning: --ckpt is deprecated; use --ckpt_path", file=sys.stderr)
    elif "ckpt" in parameters:
        old, new = "--ckpt_path", "--ckpt"
    else:
        return args
    return [re.sub(rf"^{old}(?==|$)", new, arg) for arg in args]


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-mm``.

    Bad input that the framework detects (a missing data file, a checkpoint that does not fit: any
    :class:`~lit_multimodal.errors.UserError`) ends with a one-line ``error:`` message and exit status 1; set
    ``LIT_MM_DEBUG=1`` for the traceback. Config errors are one line too (file, key, nearest valid key; see
    :mod:`lit_multimodal.config_errors`), exit status 2. Known harmless library warnings are filtered and torch's
    thread count is set first (:mod:`lit_multimodal.runtime`).
    """
    args = sys.argv[1:] if argv is None else argv
    if wants_overview(args):
        overview_parser().print_help()
        raise SystemExit(0 if args else 2)
    filter_known_warnings()
    configure_threads()
    entry = command(args[0]) if args else None
    try:
        if entry is not None and not entry.lightning:
            _run_function_command(entry, list(args))
        else:
            from lit_multimodal.fit_config import LitMMCLI

            if entry is not None and entry.target != entry.name:  # bind: fit of a binding config
                LitMMCLI(args=[str(entry.target), *args[1:]])
            else:
                LitMMCLI(args=argv)
    except ArgumentError as err:
        if os.environ.get("LIT_MM_DEBUG"):
            raise
        message = explain(err.message, args, getattr(err, "valid_keys", ()))
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:
        cause = find_user_error(err)
        if cause is None or os.environ.get("LIT_MM_DEBUG"):
            raise
        print(f"error: {error_message(cause)}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
