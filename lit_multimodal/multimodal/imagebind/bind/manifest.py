"""Paired and labelled manifests: jsonl or csv files of ``anchor`` / ``other`` / ``label`` / ``split`` records.

A binding manifest has one pair per line: ``{"anchor": "scans/0001.png", "other": "tones/0001.wav", "label":
"seven", "split": "train"}`` (jsonl) or the same columns in a csv with a header. Relative paths are relative to
the manifest's folder; for the ``text`` modality the field holds the text itself. ``label`` and ``split`` are
optional (``split``: ``train`` or ``val``; when no record has one, a seeded fraction is held out).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_multimodal.errors import DataError

__all__ = ["PairRecord", "read_manifest", "read_pairs", "resolve_item"]

SPLITS = ("train", "val")


@dataclass(frozen=True)
class PairRecord:
    """One anchor–modality pair."""

    anchor: str
    other: str
    label: str | None = None
    split: str | None = None


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``.jsonl`` / ``.json`` (a list) / ``.csv`` manifest, with ``_line`` set for messages.

    Raises:
        DataError: a missing file, an unknown suffix or a line that does not parse; the message names file and line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    records: list[dict[str, Any]] = []
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                records.append({**{k.strip(): (v or "").strip() for k, v in row.items() if k}, "_line": number})
    elif path.suffix == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append({**record, "_line": number})
    elif path.suffix == ".json":
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, list):
            raise DataError(f"{path}: expected a JSON list of records")
        records = [{**record, "_line": i + 1} for i, record in enumerate(loaded)]
    else:
        raise DataError(f"{path}: manifest must be .jsonl, .json or .csv")
    if not records:
        raise DataError(f"{path}: manifest has no records")
    return records


def resolve_item(value: str, modality: str, root: Path, where: str) -> str:
    """A manifest field as a loader input: text as is, a file path made absolute and checked to exist."""
    if modality == "text":
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise DataError(f"{where}: {modality} file {value!r} not found")
    return str(path)


def read_pairs(path: str | Path, anchor: str, modality: str, check_files: bool = True) -> list[PairRecord]:
    """The pairs of a binding manifest.

    Args:
        path: the manifest.
        anchor: modality of the ``anchor`` field (``image``/``vision`` or ``text``).
        modality: modality of the ``other`` field.
        check_files: check that every file exists.

    Raises:
        DataError: a missing field, a missing file or an unknown split, naming the manifest line.
    """
    path = Path(path).expanduser()
    root = path.parent
    pairs = []
    for record in read_manifest(path):
        where = f"{path}:{record['_line']}"
        for key in ("anchor", "other"):
            if not record.get(key):
                raise DataError(
                    f"{where}: record has no {key!r} field (keys: {sorted(k for k in record if k[0] != '_')})"
                )
        split = record.get("split") or None
        if split is not None and split not in SPLITS:
            raise DataError(f"{where}: split must be one of {SPLITS}, got {split!r}")
        label = record.get("label")
        if check_files:
            a = resolve_item(str(record["anchor"]), anchor, root, where)
            o = resolve_item(str(record["other"]), modality, root, where)
        else:
            a, o = str(record["anchor"]), str(record["other"])
        pairs.append(PairRecord(a, o, None if label in (None, "") else str(label), split))
    return pairs
