"""``lit-mm evaluate``: PandaGPT question answering over a labelled manifest, scored per modality.

The emergent-transfer table puts each modality's accuracy next to chance, marked "seen in training" or "emergent".

The manifest (jsonl/csv) has per record ``modality`` (``image``, ``video``, ``audio``, ``thermal``, ``depth``,
``imu``), ``file`` (relative to the manifest's folder), ``question``, and ``answer`` and/or ``choices`` (a list;
``answer`` then is a choice's text or letter). Decoding is pinned: greedy by default, a fixed token budget and a
recorded seed, so two runs of the same checkpoint give the same answers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from lit_multimodal.files import write_json_atomic
from lit_multimodal.multimodal.imagebind.bind.manifest import read_manifest, resolve_item
from lit_multimodal.training.errors import DataError

from .answers import MatchMode, match_answer

__all__ = ["emergent_table", "evaluate", "read_qa_manifest", "seen_modalities"]

MODALITIES = ("image", "video", "audio", "thermal", "depth", "imu")
#: PandaGPT's training modality (``model.modality``) → the input modalities it covers.
SEEN_BY_TRAINING: dict[str, tuple[str, ...]] = {"vision": ("image", "video"), "image": ("image", "video")}


def read_qa_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Validated records (``modality``, ``file`` as an absolute path, ``question``, ``answer``, ``choices``).

    Raises:
        DataError: a missing field, an unknown modality or a missing file, naming the line.
    """
    path = Path(path).expanduser()
    records = []
    for raw in read_manifest(path):
        where = f"{path}:{raw['_line']}"
        modality = raw.get("modality")
        if modality not in MODALITIES:
            raise DataError(f"{where}: modality must be one of {MODALITIES}, got {modality!r}")
        for key in ("file", "question"):
            if not raw.get(key):
                raise DataError(f"{where}: record has no {key!r}")
        choices = raw.get("choices")
        if isinstance(choices, str):
            choices = [c.strip() for c in choices.split("|") if c.strip()]
        if not raw.get("answer") and not choices:
            raise DataError(f"{where}: record needs an 'answer' or 'choices'")
        records.append(
            {
                "modality": modality,
                "file": resolve_item(str(raw["file"]), modality, path.parent, where),
                "question": str(raw["question"]),
                "answer": str(raw["answer"]) if raw.get("answer") not in (None, "") else None,
                "choices": list(choices) if choices else None,
                "line": raw["_line"],
            }
        )
    return records


def seen_modalities(train_modality: str | list[str]) -> set[str]:
    """Input modalities covered by training on ``train_modality`` (PandaGPT's ``vision``: images and videos)."""
    names = [train_modality] if isinstance(train_modality, str) else list(train_modality)
    seen: set[str] = set()
    for name in names:
        seen.update(SEEN_BY_TRAINING.get(name, (name,)))
    return seen


def _chance(records: list[dict[str, Any]]) -> float:
    """Mean 1/len(choices) for multiple choice; else 1 / the number of distinct reference answers."""
    if all(r["choices"] for r in records):
        return sum(1.0 / len(r["choices"]) for r in records) / len(records)
    distinct = {r["answer"].strip().lower() for r in records if r["answer"]}
    return 1.0 / max(1, len(distinct))


def emergent_table(results: list[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
    """One row per modality: records, accuracy, chance, accuracy / chance and ``seen in training``/``emergent``."""
    by_modality: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_modality[result["modality"]].append(result)
    rows = []
    for modality in [m for m in MODALITIES if m in by_modality]:
        group = by_modality[modality]
        accuracy = sum(r["correct"] for r in group) / len(group)
        chance = _chance(group)
        rows.append(
            {
                "modality": modality,
                "records": len(group),
                "accuracy": accuracy,
                "chance": chance,
                "x_chance": accuracy / chance if chance else None,
                "status": "seen in training" if modality in seen else "emergent",
            }
        )
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="PandaGPT: accuracy per modality (emergent = never seen in training)")
    for column in ("modality", "records", "accuracy", "chance", "x chance", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["modality"], str(row["records"]), f"{row['accuracy']:.3f}", f"{row['chance']:.3f}",
            f"{row['x_chance']:.1f}" if row["x_chance"] is not None else "-", row["status"],
        )  # fmt: skip
    Console().print(table)


def evaluate(
    manifest: str,
    ckpt: str | None = None,
    fit_config: str | list[str] | None = None,
    imagebind_checkpoint: str | None = None,
    out: str | None = None,
    greedy: bool = True,
    max_new_tokens: int = 32,
    seed: int = 0,
    top_p: float = 0.01,
    temperature: float = 1.0,
    match: MatchMode = "auto",
    train_modalities: list[str] | None = None,
    limit: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Asks PandaGPT every question of a labelled manifest and scores the answers per modality.

    Prints the emergent-transfer table and writes ``evaluate.json`` (summary, table, every answer) and
    TensorBoard scalars ``evaluate/accuracy/<modality>`` into ``out``.

    Args:
        manifest: jsonl/csv of ``modality``, ``file``, ``question``, ``answer`` and/or ``choices``.
        ckpt: PandaGPT checkpoint (``last.ckpt``, delta or DeepSpeed folder).
        fit_config: the ``lit-mm fit`` config of the model: a YAML path or the fit arguments; on the command line
            ``--config a.yaml [--config b.yaml] [--model.init_args.x y]``, read exactly as ``lit-mm fit`` reads them.
        imagebind_checkpoint: ImageBind weights (overrides the config's embedder checkpoint).
        out: output folder.
        greedy: greedy decoding (default); False: the official nucleus sampling (``top_p``, ``temperature``).
        max_new_tokens: most tokens per answer.
        seed: sampler seed (recorded; greedy decoding does not use it).
        top_p: nucleus mass when sampling.
        temperature: softmax temperature when sampling.
        match: answer matching rule (``auto``, ``exact``, ``contains``, ``choice``, ``number``).
        train_modalities: modalities of the instruction data; default: the model's ``modality`` (``vision``:
            images and videos are "seen", everything else "emergent").
        limit: evaluate only the first ``limit`` records of each modality.
        device: where the models run.

    Returns:
        The summary (per-modality rows and settings).
    """
    from .chat import PandaGPTChat

    records = read_qa_manifest(manifest)
    if limit is not None:
        kept: dict[str, int] = defaultdict(int)
        records = [r for r in records if (kept.__setitem__(r["modality"], kept[r["modality"]] + 1) or True)
                   and kept[r["modality"]] <= limit]  # fmt: skip
    engine = PandaGPTChat.from_files(ckpt, fit_config, imagebind_checkpoint, device=device)
    seen = seen_modalities(train_modalities or engine.model.modality)
    sampling = {"do_sample": not greedy, "max_new_tokens": max_new_tokens, "seed": seed,
                "top_p": top_p, "temperature": temperature}  # fmt: skip
    start = time.perf_counter()
    results = []
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("answering", total=len(records))
        for record in records:
            token, _ = engine.encode_inputs({record["modality"]: record["file"]})
            prediction = engine.answer([], record["question"], token, **sampling)
            correct = match_answer(prediction, record["answer"], record["choices"], match)
            results.append({**record, "prediction": prediction, "correct": bool(correct)})
            progress.advance(task)
    rows = emergent_table(results, seen)
    _print_table(rows)
    summary = {
        "manifest": str(manifest), "ckpt": ckpt, "config": fit_config, "decoding": {"greedy": greedy, **sampling},
        "match": match, "seen_in_training": sorted(seen), "records": len(results),
        "seconds": round(time.perf_counter() - start, 2), "table": rows,
    }  # fmt: skip
    if out is not None:
        folder = Path(out).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "evaluate.json", {**summary, "answers": results}, sort_keys=False)
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(folder / "tensorboard")) as writer:
            for row in rows:
                writer.add_scalar(f"evaluate/accuracy/{row['modality']}", row["accuracy"], 0)
                writer.add_scalar(f"evaluate/chance/{row['modality']}", row["chance"], 0)
        summary["json"] = str(folder / "evaluate.json")
    return summary
