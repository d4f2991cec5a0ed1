"""One row per planned run of a sweep: reading the sweep folder, the task catalogue, ``results.csv``."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from lit_multimodal.sweeps.launchers import LOG_FILE
from lit_multimodal.sweeps.plan import MANIFEST as MANIFEST_FILE
from lit_multimodal.sweeps.plan import SELECTION as SELECTION_FILE
from lit_multimodal.sweeps.plan import manifest_entries
from lit_multimodal.training.results import read_result, result_status

log = logging.getLogger(__name__)

FGVC_COLUMNS = {"cub": "CUB", "nabirds": "NABirds", "flowers": "Flowers", "dogs": "Dogs", "cars": "Cars"}
TASK_PREFIXES = ("vtab-", "vtab/", "vtab1k-", "vtab1k/", "fgvc-", "fgvc/")


@dataclass
class RunRow:
    """One planned run and its outcome: a row of ``results.csv``.

    Accuracies are in percent; paths are relative to the folder given to :func:`report`. ``selected`` tells
    whether a final-stage run trained the grid point that ``selection.json`` names for its task (None for
    search runs and when the sweep has no selection for the task): a final of another point is stale, left
    by an earlier selection, and never averaged.
    """

    sweep: str
    id: str
    name: str
    task: str
    tuning: str
    stage: str
    base_lr: float | None
    weight_decay: float | None
    seed: int | None
    status: str
    val_top1: float | None
    test_top1: float | None
    tuned_percent: float | None
    tuned_percent_of_backbone: float | None
    trainable_params: int | None
    wall_time_s: float | None
    run_dir: str
    log: str
    error: str
    selected: bool | None = None


CSV_COLUMNS = tuple(field.name for field in fields(RunRow))


@dataclass(frozen=True)
class TaskInfo:
    """Where a task goes in the report.

    Attributes:
        key: canonical name (the data table's key, or the name as planned for other tasks).
        family: ``fgvc``, ``vtab`` or ``other``.
        column: column header.
        group: VTAB-1k group (``Natural``, ``Specialized``, ``Structured``); None outside VTAB-1k.
        num_classes: the task's class count where the catalogue knows it (for the plot's chance line).
    """

    key: str
    family: str
    column: str
    group: str | None = None
    num_classes: int | None = None


def find_sweeps(sweep_dir: str | os.PathLike[str]) -> list[Path]:
    """Folders at or below ``sweep_dir`` that hold a ``manifest.jsonl``, sorted.

    Run folders inside a sweep are not searched (a sweep holds no other sweep).

    Raises:
        FileNotFoundError: ``sweep_dir`` does not exist or holds no manifest.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no such sweep folder: {root}")
    found = []
    for folder, dirnames, filenames in os.walk(root):
        if MANIFEST_FILE in filenames:
            found.append(Path(folder))
            dirnames.clear()
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    if not found:
        raise FileNotFoundError(f"no {MANIFEST_FILE} at or below {root}")
    return sorted(found)


def sweep_progress(sweep_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Counts of the planned runs by outcome, for progress lines while a sweep runs.

    Args:
        sweep_dir: a sweep folder (holding ``manifest.jsonl``) or a folder of sweeps.

    Returns:
        ``{"total", "done", "failed", "interrupted", "missing"}``; ``done`` counts ``status: success``,
        ``missing`` the runs without ``result.json`` (not started, running or killed). The last four add up to
        ``total``.
    """
    counts = Counter()
    for sweep in find_sweeps(sweep_dir):
        for entry in manifest_entries(sweep / MANIFEST_FILE):
            counts[result_status(read_result(sweep / entry["run_dir"]))] += 1
    return status_counts(counts)


def status_counts(counter: Counter[str]) -> dict[str, int]:
    """Counts of run statuses as ``total``, ``done``, ``failed``, ``interrupted`` and ``missing``."""
    return {
        "total": sum(counter.values()),
        "done": counter["success"],
        "failed": counter["failed"],
        "interrupted": counter["interrupted"],
        "missing": counter["missing"],
    }


def _param(params: dict[str, Any], name: str) -> float | None:
    """The override of ``params`` whose dotted key ends in ``name`` (``model.optim.base_lr`` for ``base_lr``)."""
    for key, value in params.items():
        if key == name or key.endswith(f".{name}"):
            return as_float(value)
    return None


def as_float(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing or not a number."""
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def as_percent(value: Any) -> float | None:
    """A fraction in [0, 1] as a percentage, or None."""
    number = as_float(value)
    return None if number is None else round(100.0 * number, 6)


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string."""
    return Path(os.path.relpath(path, root)).as_posix()


def sweep_name(sweep: Path, root: Path) -> str:
    """The name of ``sweep`` in tables: its path under ``root`` (the root folder's name for the root itself)."""
    rel = relative_path(sweep, root)
    return root.resolve().name if rel == "." else rel


def selection_entries(sweep: Path) -> dict[str, dict[str, Any]]:
    """The sweep's ``selection.json`` (task → chosen point); empty when absent or unreadable."""
    path = sweep / SELECTION_FILE
    if not path.is_file():
        return {}
    try:
        selection = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable (%s), skipped", path, err)
        return {}
    if not isinstance(selection, dict):
        log.warning("%s: not a JSON object, skipped", path)
        return {}
    return {str(task): entry for task, entry in selection.items() if isinstance(entry, dict)}


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def is_selected_point(params: dict[str, Any], chosen: dict[str, Any]) -> bool:
    """Whether a run's grid point ``params`` is the ``chosen`` selection entry's point.

    The runner's entries hold the whole point under ``params``; older ones only ``base_lr`` and
    ``weight_decay``, which are then compared.
    """
    if isinstance(chosen.get("params"), dict):
        return _canonical(params) == _canonical(chosen["params"])
    return all(
        as_float(chosen.get(name)) is None or _param(params, name) == as_float(chosen.get(name))
        for name in ("base_lr", "weight_decay")
    )


def collect_runs(sweep_dir: str | os.PathLike[str]) -> list[RunRow]:
    """Every planned run of every sweep at or below ``sweep_dir`` with its outcome, in manifest order."""
    root = Path(sweep_dir)
    rows = []
    for sweep in find_sweeps(root):
        name = sweep_name(sweep, root)
        selection = selection_entries(sweep)
        for entry in manifest_entries(sweep / MANIFEST_FILE):
            row = _run_row(name, sweep, root, entry)
            chosen = selection.get(str(entry.get("task")))
            if row.stage == "final" and chosen is not None:
                row.selected = is_selected_point(entry.get("params") or {}, chosen)
            rows.append(row)
    return rows


def _run_row(sweep_name: str, sweep: Path, root: Path, entry: dict[str, Any]) -> RunRow:
    run_dir = sweep / entry["run_dir"]
    result = read_result(run_dir)
    status = result_status(result)
    result = result or {}
    params = entry.get("params") or {}
    hparams = result.get("hparams") or {}
    counts = result.get("params") or {}
    # Metrics count only for successful runs: a crashed one may carry the placeholders logged at fit start.
    metrics = (result.get("metrics") or {}) if status == "success" else {}
    data_args = (result.get("data") or {}).get("init_args") or {}
    task = entry.get("task") or data_args.get("task") or data_args.get("dataset") or "unknown"
    seed = entry.get("seed", result.get("seed"))
    # Manifests written before sweeps named their keys hold the image classifier's (``...base_lr``).
    base_lr = as_float(params[entry["lr_key"]]) if entry.get("lr_key") in params else _param(params, "base_lr")
    weight_decay = (
        as_float(params[entry["wd_key"]]) if entry.get("wd_key") in params else _param(params, "weight_decay")
    )
    trainable = counts.get("trainable")
    log_path = run_dir / LOG_FILE
    error = str(result.get("error") or "")
    return RunRow(
        sweep=sweep_name,
        id=str(entry.get("id", "")),
        name=str(entry.get("name", Path(entry["run_dir"]).name)),
        task=str(task),
        tuning=str(entry.get("tuning") or hparams.get("tuning") or "unknown"),
        stage=str(entry.get("stage", "")),
        base_lr=base_lr if base_lr is not None else as_float(hparams.get("base_lr")),
        weight_decay=weight_decay if weight_decay is not None else as_float(hparams.get("weight_decay")),
        seed=int(seed) if seed is not None else None,
        status=status,
        val_top1=as_percent(metrics.get("val/top1")),
        test_top1=as_percent(metrics.get("test/top1")),
        tuned_percent=as_float(counts.get("tuned_percent")),
        tuned_percent_of_backbone=as_float(counts.get("tuned_percent_of_backbone")),
        trainable_params=int(trainable) if trainable is not None else None,
        wall_time_s=as_float(result.get("wall_time_s")),
        run_dir=relative_path(run_dir, root),
        log=relative_path(log_path, root) if log_path.is_file() else "",
        error=error,
    )


# -- task metadata -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def task_catalog() -> tuple[list[TaskInfo], list[TaskInfo], dict[str, TaskInfo]]:
    """FGVC and VTAB-1k tasks in the paper's order, and every accepted spelling of their names."""
    # Imported here: the data package pulls in torch and Lightning, which sweep_progress does not need.
    from lit_multimodal.data.fgvc import FGVC_DATASETS
    from lit_multimodal.data.vtab import VTAB_TASKS

    fgvc = [
        TaskInfo(
            key, "fgvc", getattr(info, "short", None) or FGVC_COLUMNS.get(key, info.name), num_classes=info.num_classes
        )
        for key, info in FGVC_DATASETS.items()
    ]
    vtab = [TaskInfo(key, "vtab", task.short, task.group, task.num_classes) for key, task in VTAB_TASKS.items()]
    aliases: dict[str, TaskInfo] = {}
    spellings: dict[str, set[str]] = defaultdict(set)
    for info in fgvc:
        data = FGVC_DATASETS[info.key]
        for spelling in (info.column, data.name, data.vpt_name, data.vpt_folder):
            spellings[spelling.lower()].add(info.key)
    for info in vtab:
        data = VTAB_TASKS[info.key]
        for spelling in (data.display, data.short, data.vpt_name, data.vpt_name.split("(")[0]):
            spellings[spelling.lower()].add(info.key)
    by_key = {info.key: info for info in fgvc + vtab}
    for spelling, keys in spellings.items():
        if len(keys) == 1:
            aliases[spelling] = by_key[next(iter(keys))]
    aliases.update(by_key)
    return fgvc, vtab, aliases


def task_info(task: str) -> TaskInfo:
    """Family, column header and group of ``task`` (an FGVC key, a VTAB-1k folder name or another task)."""
    _, _, aliases = task_catalog()
    name = task.strip().lower()
    candidates = [name] + [name[len(prefix) :] for prefix in TASK_PREFIXES if name.startswith(prefix)]
    for candidate in candidates:
        if candidate in aliases:
            return aliases[candidate]
    return TaskInfo(task, "other", task)


# -- aggregation ---------------------------------------------------------------------------------------


def write_csv(rows: list[RunRow], path: Path) -> None:
    """``results.csv``: one row per planned run (columns: :data:`CSV_COLUMNS`)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
