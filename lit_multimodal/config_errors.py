"""Config errors as one paragraph: which file, which key, the nearest valid key.

jsonargparse reports a misspelt key under ``model``/``data`` as a dump of every Union subtype it tried,
preceded by the whole usage, and a YAML syntax error as ``<unicode string>``. :func:`explain` turns its
message into one paragraph that names the config file (or the command line), the key, and, for an unknown
key, the closest valid one (``difflib``). It never hides information it cannot place: an unrecognised
message is kept, only condensed to its informative lines.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_NO_OPTION = re.compile(r"does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (--)?(\S+)")
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)'")
_NOISE = re.compile(
    r"^(Subtypes:|Given value type|Given value: .{60,}|Expected a <class 'NoneType'>|Errors:|Does not validate against)"
)


def config_files(args: Iterable[str]) -> list[str]:
    """The files given with ``--config``/``-c`` (both ``--config F`` and ``--config=F``), in order."""
    args = list(args)
    files = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def explain(message: str, args: Iterable[str], valid_keys: Iterable[str] = ()) -> str:
    """One paragraph for a jsonargparse error ``message`` raised while parsing ``args``.

    Args:
        message: the error text jsonargparse produced.
        args: the command line (to find the config files and options given).
        valid_keys: the option keys of the (sub)command parser, for "did you mean".
    """
    args = list(args)
    files = config_files(args)
    if "Problems parsing config" in message or "while scanning" in message or "while parsing" in message:
        syntax = _yaml_syntax_error(files)
        if syntax:
            return syntax
    unknown = _NOT_ACCEPTED.search(message) or _NO_OPTION.search(message)
    if unknown:
        name = unknown.group(1)
        parent = _PARSER_KEY.search(message)
        class_path = _CLASS_PATH.search(message)
        key = f"{parent.group(1)}.init_args.{name}" if parent and class_path else name
        candidates = (
            [f"{parent.group(1)}.init_args.{k}" for k in _class_keys(class_path.group(1))]
            if parent and class_path
            else list(valid_keys)
        )
        return _unknown_key(key, name, candidates, _where(name, args, files), class_path and class_path.group(1))
    unrecognized = _UNRECOGNIZED.search(message)
    if unrecognized:
        name = unrecognized.group(2).split("=", 1)[0]
        return _unknown_key(name, name, list(valid_keys), "on the command line", None)
    keys = _PARSER_KEY.findall(message)
    if keys and keys[0] != "config":
        class_path = _CLASS_PATH.search(message)
        key = f"{keys[0]}.init_args.{keys[-1]}" if class_path and len(keys) > 1 else keys[-1]
        detail = _CLASS_PATH.sub("", _PARSER_KEY.sub("", _condense(message)))
        detail = re.sub(r"<class '([\w.]+)'>", r"\1", detail).strip(" :")
        if "Got value:" in detail:
            detail = detail.split(" Given value:", 1)[0]
        detail = re.sub(r"\.? *(Got|Given) value: ", ", got ", re.sub(r"^Expected an? ", "expected ", detail))
        return f"invalid value for '{key}' {_where(key, args, files)}: {detail}"
    return re.sub(r"<class '([\w.]+)'>", r"\1", _condense(message))


def _unknown_key(key: str, name: str, candidates: list[str], where: str, owner: str | None) -> str:
    leaf_candidates = {c.rsplit(".", 1)[-1]: c for c in candidates}
    near = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not near:
        leaf = difflib.get_close_matches(name.rsplit(".", 1)[-1], list(leaf_candidates), n=1, cutoff=0.6)
        near = [leaf_candidates[leaf[0]]] if leaf else []
    text = f"unknown key '{key}' {where}"
    if owner:
        text += f" ({owner} has no such argument)"
    if near:
        text += f"; did you mean '{near[0]}'?"
    return text + (" Run" if near else "; run") + " with --help for every option."


def _where(name: str, args: list[str], files: list[str]) -> str:
    """Where the value that counts came from: the last of the config files holding the key and the options."""
    leaf = name.rsplit(".", 1)[-1]
    where = None
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args) or arg.startswith("--config="):
            path = arg.split("=", 1)[1] if arg.startswith("--config=") else args[i + 1]
            if _file_holds(path, name, leaf):
                where = f"in {path}"
        elif arg.startswith("--") and arg[2:].split("=", 1)[0].endswith(leaf):
            where = "on the command line"
    return where or (f"in {files[-1]}" if files else "on the command line")


def _file_holds(path: str, name: str, leaf: str) -> bool:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return _holds_key(data, name.split(".")) or _holds_key(data, [leaf])


def _holds_key(data: Any, parts: list[str]) -> bool:
    """Whether ``data`` has the dotted key ``parts`` at any depth (a leaf name alone matches anywhere)."""
    if not isinstance(data, dict):
        return False
    node: Any = data
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return True
    return any(_holds_key(value, parts) for value in data.values())


def _class_keys(class_path: str) -> list[str]:
    """The argument keys (nested dataclass fields dotted) that jsonargparse accepts for ``class_path``."""
    from jsonargparse import ArgumentParser

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, fail_untyped=False)
    except Exception:  # noqa: BLE001 - suggestions are a courtesy; the error itself is still reported
        return []
    return [action.dest for action in parser._actions if action.dest not in ("help", "config", "print_config")]


def _yaml_syntax_error(files: list[str]) -> str | None:
    """``FILE line L, column C: problem`` for the first config file that is not valid YAML."""
    for path in files:
        try:
            yaml.safe_load(Path(path).read_text())
        except OSError:
            continue
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            return f"{path}{where}: invalid YAML ({problem})"
    return None


def _condense(message: str) -> str:
    """The informative lines of a jsonargparse message, joined into one paragraph."""
    lines = [line.strip().lstrip("- ").strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not _NOISE.match(line)]
    return " ".join(kept) if kept else message.strip()
