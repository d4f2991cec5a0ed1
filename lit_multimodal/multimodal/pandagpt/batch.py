"""Batch chat: answer every question of a JSONL file into another JSONL file, resumably.

Each input line is one record::

    {"id": "q1", "prompt": "What is in the image?", "image": "images/cat.jpg"}

``prompt`` (or ``question``) is required; any of ``image``, ``video``, ``audio``, ``thermal``, ``depth``, ``imu``
names a file (or a list of files) — relative paths are relative to the JSONL file's folder; ``history`` may give
earlier ``[question, answer]`` pairs. ``id`` defaults to the line number. Each output line is
``{"id", "prompt", "answer", "modalities", "emergent", "finish_reason"}``, or ``{"id", "error"}`` for a record
that cannot be answered (bad JSON, a missing file); the run goes on. Records whose ``id`` is already in the output
file are skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.chat import MODALITY_ORDER, needs_emergent_notice

__all__ = ["done_ids", "run_batch"]


def done_ids(path: Path) -> set[str]:
    """Ids already answered in an output file (a torn last line from a killed run is ignored)."""
    if not path.is_file():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def _files(record: dict[str, Any], root: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for name in MODALITY_ORDER:
        value = record.get(name)
        if not value:
            continue
        paths = [value] if isinstance(value, str) else list(value)
        files[name] = [str(path if Path(path).is_absolute() else root / path) for path in paths]
    return files


def _answer_one(engine: Any, record: Any, root: Path, sampling: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise InputError(f"record is a {type(record).__name__}, not an object")
    prompt = record.get("prompt", record.get("question"))
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("record has no 'prompt' text")
    history = [tuple(pair) for pair in record.get("history") or []]
    files = _files(record, root)
    token, _ = engine.encode_inputs(files)
    answer = engine.answer(history, prompt, token, **sampling)
    return {
        "prompt": prompt,
        "answer": answer,
        "modalities": list(files),
        "emergent": needs_emergent_notice(list(files)),
        "finish_reason": getattr(engine, "finish_reason", None),
    }


def run_batch(engine: Any, batch: str, out: str, sampling: dict[str, Any]) -> dict[str, int]:
    """Answers every record of ``batch`` not yet in ``out``, appending one JSON line per record.

    Args:
        engine: a :class:`~lit_multimodal.multimodal.pandagpt.chat.PandaGPTChat`.
        batch: the questions JSONL.
        out: the answers JSONL (created, or appended to).
        sampling: keyword arguments of ``engine.answer`` (``max_new_tokens``, ``do_sample``, ...).

    Returns:
        Counts: ``answered``, ``skipped`` (already in ``out``), ``errors``.
    """
    from tqdm.auto import tqdm

    source, target = Path(batch), Path(out)
    lines = source.read_text(encoding="utf-8").splitlines()
    done = done_ids(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    counts = {"answered": 0, "skipped": 0, "errors": 0}
    torn = target.is_file() and target.stat().st_size > 0 and not target.read_bytes().endswith(b"\n")
    with target.open("a", encoding="utf-8") as handle, tqdm(total=len(lines), desc="batch chat", unit="q") as bar:
        if torn:  # a killed run left half a line: start on a fresh one
            handle.write("\n")
        for number, line in enumerate(lines, start=1):
            bar.update(1)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                record, parse_error = None, f"line {number} of {source}: not valid JSON ({err.msg})"
            else:
                parse_error = None
            record_id = str(record.get("id", number)) if isinstance(record, dict) else str(number)
            if record_id in done:
                counts["skipped"] += 1
                continue
            if parse_error is not None:
                result: dict[str, Any] = {"error": parse_error}
            else:
                try:
                    result = _answer_one(engine, record, source.parent, sampling)
                except InputError as err:
                    result = {"error": f"line {number} of {source}: {err}"}
            counts["errors" if "error" in result else "answered"] += 1
            handle.write(json.dumps({"id": record_id, **result}, ensure_ascii=False) + "\n")
            handle.flush()
            done.add(record_id)
    return counts
