"""``lit-mm report``: one sweep folder (or a folder of sweeps) as a CSV, paper-style tables and a plot.

Reads what the sweep runner and ``lit-mm fit`` leave on disk::

    <sweep>/manifest.jsonl          one planned run a line (id, name, stage, task, tuning, seed, params, run_dir)
    <sweep>/selection.json          the chosen (lr, wd) per task of the search stage (optional)
    <sweep>/<run_dir>/result.json   the run's outcome (absent: not run yet, still running or killed)
    <sweep>/<run_dir>/log.txt       the run's stdout and stderr (optional)

and writes ``results.csv`` (one row per planned run), ``summary.md`` (FGVC, VTAB-1k and other tasks as in
the VPT paper's tables, the chosen hyper-parameters, tuned parameters, and the runs that are missing or
failed), ``chosen/<sweep>/<task>.yaml`` (the chosen configs) and ``tuned_vs_accuracy.png``.

Reported accuracy follows the official protocol: the last-epoch test top-1 of the final-stage runs, mean and
population standard deviation over seeds. Only runs whose ``result.json`` says ``success`` count: a crashed
run may have left placeholder metrics behind.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
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

CSV_FILE = "results.csv"
SUMMARY_FILE = "summary.md"
PLOT_FILE = "tuned_vs_accuracy.png"
CHOSEN_DIR = "chosen"
METHOD_ORDER = ("full", "linear", "partial", "bias", "vpt_shallow", "vpt_deep")
METHOD_NAMES = {
    "full": "Full",
    "linear": "Linear",
    "partial": "Partial",
    "bias": "Bias",
    "vpt_shallow": "VPT-Shallow",
    "vpt_deep": "VPT-Deep",
}
# The FGVC column headers of the VPT paper's tables; the data table's own names are the datasets' full names.
FGVC_COLUMNS = {"cub": "CUB", "nabirds": "NABirds", "flowers": "Flowers", "dogs": "Dogs", "cars": "Cars"}
TASK_PREFIXES = ("vtab-", "vtab/", "vtab1k-", "vtab1k/", "fgvc-", "fgvc/")
DASH = "—"


@dataclass
class RunRow:
    """One planned run and its outcome: a row of ``results.csv``.

    Accuracies are in percent; paths are relative to the folder given to :func:`report`.
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


CSV_COLUMNS = tuple(field.name for field in fields(RunRow))


@dataclass(frozen=True)
class TaskInfo:
    """Where a task goes in the report.

    Attributes:
        key: canonical name (the data table's key, or the name as planned for other tasks).
        family: ``fgvc``, ``vtab`` or ``other``.
        column: column header.
        group: VTAB-1k group (``Natural``, ``Specialized``, ``Structured``); None outside VTAB-1k.
    """

    key: str
    family: str
    column: str
    group: str | None = None


@dataclass(frozen=True)
class RowKey:
    """One row of the result tables: a tuning method, split by sweep when its sweeps share a task."""

    tuning: str
    sweep: str | None = None

    @property
    def label(self) -> str:
        """The row header, e.g. ``VPT-Deep`` or ``VPT-Deep (p10)``."""
        name = METHOD_NAMES.get(self.tuning, self.tuning)
        return f"{name} ({self.sweep})" if self.sweep else name


@dataclass(frozen=True)
class Stat:
    """Mean and population standard deviation of one metric over ``n`` seeds."""

    mean: float
    std: float
    n: int

    def cell(self) -> str:
        """``82.00 ± 1.63 (3)``."""
        return f"{self.mean:.2f} ± {self.std:.2f} ({self.n})"


# -- reading the sweep ---------------------------------------------------------------------------------


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
    return _counts(counts)


def _counts(counter: Counter[str]) -> dict[str, int]:
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
            return _float(value)
    return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _percent(value: Any) -> float | None:
    number = _float(value)
    return None if number is None else round(100.0 * number, 6)


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _sweep_name(sweep: Path, root: Path) -> str:
    rel = _rel(sweep, root)
    return root.resolve().name if rel == "." else rel


def collect_runs(sweep_dir: str | os.PathLike[str]) -> list[RunRow]:
    """Every planned run of every sweep at or below ``sweep_dir`` with its outcome, in manifest order."""
    root = Path(sweep_dir)
    rows = []
    for sweep in find_sweeps(root):
        name = _sweep_name(sweep, root)
        for entry in manifest_entries(sweep / MANIFEST_FILE):
            rows.append(_run_row(name, sweep, root, entry))
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
    base_lr = _param(params, "base_lr")
    weight_decay = _param(params, "weight_decay")
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
        base_lr=base_lr if base_lr is not None else _float(hparams.get("base_lr")),
        weight_decay=weight_decay if weight_decay is not None else _float(hparams.get("weight_decay")),
        seed=int(seed) if seed is not None else None,
        status=status,
        val_top1=_percent(metrics.get("val/top1")),
        test_top1=_percent(metrics.get("test/top1")),
        tuned_percent=_float(counts.get("tuned_percent")),
        tuned_percent_of_backbone=_float(counts.get("tuned_percent_of_backbone")),
        trainable_params=int(trainable) if trainable is not None else None,
        wall_time_s=_float(result.get("wall_time_s")),
        run_dir=_rel(run_dir, root),
        log=_rel(log_path, root) if log_path.is_file() else "",
        error=error,
    )


# -- task metadata -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _task_catalog() -> tuple[list[TaskInfo], list[TaskInfo], dict[str, TaskInfo]]:
    """FGVC and VTAB-1k tasks in the paper's order, and every accepted spelling of their names."""
    # Imported here: the data package pulls in torch and Lightning, which sweep_progress does not need.
    from lit_multimodal.data.fgvc import FGVC_DATASETS
    from lit_multimodal.data.vtab import VTAB_TASKS

    fgvc = [
        TaskInfo(key, "fgvc", getattr(info, "short", None) or FGVC_COLUMNS.get(key, info.name))
        for key, info in FGVC_DATASETS.items()
    ]
    vtab = [TaskInfo(key, "vtab", task.short, task.group) for key, task in VTAB_TASKS.items()]
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
    _, _, aliases = _task_catalog()
    name = task.strip().lower()
    candidates = [name] + [name[len(prefix) :] for prefix in TASK_PREFIXES if name.startswith(prefix)]
    for candidate in candidates:
        if candidate in aliases:
            return aliases[candidate]
    return TaskInfo(task, "other", task)


# -- aggregation ---------------------------------------------------------------------------------------


def _method_rank(tuning: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(tuning) if tuning in METHOD_ORDER else len(METHOD_ORDER), tuning)


def row_keys(rows: Iterable[RunRow]) -> dict[tuple[str, str], RowKey]:
    """The table row of each (tuning, sweep).

    A method's sweeps share one row unless two of them ran the same task (e.g. two prompt lengths); then
    each of its sweeps gets its own row.
    """
    sweeps_of: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        sweeps_of[row.tuning][task_info(row.task).key].add(row.sweep)
    keys = {}
    for tuning, tasks in sweeps_of.items():
        split = any(len(sweeps) > 1 for sweeps in tasks.values())
        for sweeps in tasks.values():
            for sweep in sweeps:
                keys[(tuning, sweep)] = RowKey(tuning, sweep if split else None)
    return keys


def _sorted_keys(keys: Iterable[RowKey]) -> list[RowKey]:
    return sorted(set(keys), key=lambda k: (_method_rank(k.tuning), k.sweep or ""))


def _stat(values: list[float]) -> Stat:
    # Population std (ddof 0), as the official demo's average_df.
    return Stat(statistics.fmean(values), statistics.pstdev(values), len(values))


@dataclass
class Aggregate:
    """Final-stage results per table row and task.

    Attributes:
        test: test top-1 statistics per (row, task key) over the successful final-stage seeds.
        planned: task keys each row has final-stage runs planned for.
        tuned: tuned % (of all parameters), % of the backbone and trainable count per (row, task key), from
            any successful run (they do not depend on lr, wd or seed).
        search_val: best search-stage val top-1 per (row, task key).
        tasks: the task info of every task key seen.
    """

    test: dict[tuple[RowKey, str], Stat]
    planned: dict[RowKey, set[str]]
    tuned: dict[tuple[RowKey, str], tuple[float | None, float | None, int | None]]
    search_val: dict[tuple[RowKey, str], float]
    tasks: dict[str, TaskInfo]


def aggregate(rows: list[RunRow]) -> Aggregate:
    """Groups the runs into table cells (see :class:`Aggregate`)."""
    keys = row_keys(rows)
    values: dict[tuple[RowKey, str], list[float]] = defaultdict(list)
    planned: dict[RowKey, set[str]] = defaultdict(set)
    tuned = {}
    search_val: dict[tuple[RowKey, str], float] = {}
    tasks = {}
    for row in rows:
        info = task_info(row.task)
        tasks[info.key] = info
        key = keys[(row.tuning, row.sweep)]
        cell = (key, info.key)
        if row.stage == "final":
            planned[key].add(info.key)
        if row.status != "success":
            continue
        if row.tuned_percent is not None and cell not in tuned:
            tuned[cell] = (row.tuned_percent, row.tuned_percent_of_backbone, row.trainable_params)
        if row.stage == "final" and row.test_top1 is not None:
            values[cell].append(row.test_top1)
        if row.stage == "search" and row.val_top1 is not None:
            search_val[cell] = max(search_val.get(cell, row.val_top1), row.val_top1)
    test = {cell: _stat(found) for cell, found in values.items()}
    return Aggregate(test, dict(planned), tuned, search_val, tasks)


def _mean_of(agg: Aggregate, key: RowKey, task_keys: list[str]) -> tuple[float | None, list[str]]:
    """Plain mean of the row's per-task means over ``task_keys``; None and the tasks lacking results if any."""
    lacking = [task for task in task_keys if (key, task) not in agg.test]
    if lacking or not task_keys:
        return None, lacking
    return statistics.fmean(agg.test[(key, task)].mean for task in task_keys), []


# -- Markdown ------------------------------------------------------------------------------------------


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in body), ""]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return DASH if value is None else format(value, spec)


def _cell(agg: Aggregate, key: RowKey, task: str) -> str:
    stat = agg.test.get((key, task))
    return stat.cell() if stat else DASH


def _family_rows(agg: Aggregate, tasks: list[TaskInfo]) -> list[RowKey]:
    wanted = {t.key for t in tasks}
    with_results = {key for key, task in agg.test if task in wanted}
    return _sorted_keys([key for key, planned in agg.planned.items() if planned & wanted] + list(with_results))


def _lacking_note(key: RowKey, what: str, lacking: list[str]) -> str:
    names = ", ".join(task_info(t).column for t in lacking)
    return f"- {key.label}, {what}: no final results for {names}."


def fgvc_table(agg: Aggregate, fgvc: list[TaskInfo]) -> list[str]:
    """The FGVC table (CUB, NABirds, Flowers, Dogs, Cars, Mean) with notes on incomplete means."""
    keys = _family_rows(agg, fgvc)
    if not keys:
        return []
    body, notes = [], []
    for key in keys:
        mean, lacking = _mean_of(agg, key, [t.key for t in fgvc])
        if lacking:
            notes.append(_lacking_note(key, "Mean", lacking))
        body.append([key.label, *(_cell(agg, key, t.key) for t in fgvc), _fmt(mean)])
    lines = ["## FGVC", "", *_md_table(["Method", *(t.column for t in fgvc), "Mean"], body)]
    lines += ["Mean: plain mean of the five per-task means.", *notes, ""]
    return lines


def vtab_table(agg: Aggregate, vtab: list[TaskInfo]) -> list[str]:
    """The VTAB-1k table: 19 tasks in the paper's order, the three group means and the overall mean."""
    keys = _family_rows(agg, vtab)
    if not keys:
        return []
    groups = list(dict.fromkeys(t.group for t in vtab if t.group))
    body, notes = [], []
    for key in keys:
        means = []
        for group in groups:
            mean, lacking = _mean_of(agg, key, [t.key for t in vtab if t.group == group])
            if lacking:
                notes.append(_lacking_note(key, group, lacking))
            means.append(_fmt(mean))
        overall, _ = _mean_of(agg, key, [t.key for t in vtab])
        body.append([key.label, *(_cell(agg, key, t.key) for t in vtab), *means, _fmt(overall)])
    header = ["Method", *(t.column for t in vtab), *groups, "Mean"]
    lines = ["## VTAB-1k", "", *_md_table(header, body)]
    lines += [
        f"{' / '.join(groups)}: plain mean of the group's per-task means, shown only when every task of the "
        f"group has results; Mean: over all {len(vtab)} tasks.",
        *notes,
        "",
    ]
    return lines


def other_table(agg: Aggregate) -> list[str]:
    """Tasks outside FGVC and VTAB-1k, one column each."""
    others = sorted((t for t in agg.tasks.values() if t.family == "other"), key=lambda t: t.key)
    keys = _family_rows(agg, others)
    if not keys:
        return []
    body = [[key.label, *(_cell(agg, key, t.key) for t in others)] for key in keys]
    return ["## Other tasks", "", *_md_table(["Method", *(t.column for t in others)], body)]


def _selection_entries(sweep: Path) -> dict[str, dict[str, Any]]:
    path = sweep / SELECTION_FILE
    if not path.is_file():
        return {}
    try:
        selection = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable (%s), skipped", path, err)
        return {}
    return {str(task): entry for task, entry in selection.items() if isinstance(entry, dict)}


def _selection_metric(entry: dict[str, Any]) -> str:
    """The chosen point's validation top-1 in percent; another selection metric is named after the value."""
    for key in ("val_top1", "val/top1"):
        if _float(entry.get(key)) is not None:
            return _fmt(_percent(entry[key]))
    for key, value in entry.items():
        if "/" in key and _float(value) is not None:
            return f"{_fmt(_percent(value))} ({key})"
    return DASH


def copy_chosen(sweep_dir: Path, out: Path, rows: list[RunRow]) -> tuple[list[list[str]], list[str]]:
    """Copies each chosen config to ``chosen/<sweep>/<task>.yaml``.

    Returns:
        The body of the "Chosen hyper-parameters" table and the paths of the copies.
    """
    tuning_of: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        tuning_of[(row.sweep, row.task)][row.tuning] += 1
        tuning_of[(row.sweep, "")][row.tuning] += 1
    body, copies = [], []
    for sweep in find_sweeps(sweep_dir):
        name = _sweep_name(sweep, sweep_dir)
        for task, entry in sorted(_selection_entries(sweep).items()):
            methods = tuning_of.get((name, task)) or tuning_of.get((name, "")) or Counter({"unknown": 1})
            tuning = methods.most_common(1)[0][0]
            config = entry.get("config")
            copied = DASH
            if config:
                source = sweep / str(config)
                target = out / CHOSEN_DIR / name / f"{task}.yaml"
                if source.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    copies.append(str(target))
                    copied = _rel(target, out)
                else:
                    copied = f"{DASH} (config not found: {_rel(source, sweep_dir)})"
            body.append(
                [
                    name,
                    METHOD_NAMES.get(tuning, tuning),
                    task_info(task).column,
                    _fmt(_float(entry.get("base_lr")), "g"),
                    _fmt(_float(entry.get("weight_decay")), "g"),
                    _selection_metric(entry),
                    copied,
                ]
            )
    return body, copies


def tuned_rows(agg: Aggregate) -> list[list[str]]:
    """Per table row: tasks, mean tuned % of all parameters (min–max), % of the backbone, trainable count."""
    per_key: dict[RowKey, list[tuple[float | None, float | None, int | None]]] = defaultdict(list)
    for (key, _), value in agg.tuned.items():
        per_key[key].append(value)
    body = []
    for key in _sorted_keys(per_key):
        values = per_key[key]
        of_all = [v[0] for v in values if v[0] is not None]
        of_backbone = [v[1] for v in values if v[1] is not None]
        trainable = [v[2] for v in values if v[2] is not None]
        spread = f" ({min(of_all):.3g}–{max(of_all):.3g})" if of_all and min(of_all) != max(of_all) else ""
        body.append(
            [
                key.label,
                str(len(values)),
                (f"{statistics.fmean(of_all):.3g}" + spread) if of_all else DASH,
                f"{statistics.fmean(of_backbone):.3g}" if of_backbone else DASH,
                f"{statistics.fmean(trainable) / 1e6:.3f} M" if trainable else DASH,
            ]
        )
    return body


def problem_rows(rows: list[RunRow]) -> list[list[str]]:
    """The runs that are missing, failed or interrupted, with their log paths and the error's first line."""
    body = []
    for row in rows:
        if row.status == "success":
            continue
        error = row.error.strip().splitlines()[0].replace("`", "'") if row.error.strip() else ""
        error = error if len(error) <= 160 else error[:157] + "..."
        log_cell = f"`{row.log}`" if row.log else "no log.txt"
        body.append(
            [row.sweep, f"`{row.run_dir}`", row.task, row.stage, row.status, log_cell, f"`{error}`" if error else ""]
        )
    return body


def render_summary(
    sweep_dir: Path, rows: list[RunRow], agg: Aggregate, chosen: list[list[str]], counts: dict[str, int]
) -> str:
    """The text of ``summary.md``."""
    fgvc, vtab, _ = _task_catalog()
    sweeps = Counter(row.sweep for row in rows)
    lines = [
        "# Sweep report",
        "",
        "Sweeps: " + ", ".join(f"`{name}` ({n} runs)" for name, n in sorted(sweeps.items())) + ".",
        f"Runs: {counts['done']} done, {counts['failed']} failed, {counts['interrupted']} interrupted, "
        f"{counts['missing']} missing of {counts['total']} planned. Paths are relative to `{sweep_dir}`.",
        "",
        "Test top-1 (%) at the last epoch of the final-stage runs: mean ± population standard deviation "
        "(ddof 0, as the official VPT demo) over seeds, the number of seeds in parentheses. Only runs whose "
        "`result.json` says `success` count.",
        "",
    ]
    tables = fgvc_table(agg, fgvc) + vtab_table(agg, vtab) + other_table(agg)
    lines += tables or ["No final-stage results yet.", ""]
    lines += ["## Chosen hyper-parameters", ""]
    if chosen:
        header = ["Sweep", "Method", "Task", "base lr", "weight decay", "val top-1 (%)", "Config"]
        lines += _md_table(header, chosen)
    else:
        lines += [f"No {SELECTION_FILE} yet.", ""]
    lines += ["## Tuned parameters", ""]
    tuned = tuned_rows(agg)
    if tuned:
        header = ["Method", "Tasks", "Tuned % of all (min–max)", "Tuned % of backbone", "Trainable params"]
        lines += _md_table(header, tuned)
        lines += ["Means over tasks (the head's size depends on the class count).", ""]
    else:
        lines += ["No successful runs yet.", ""]
    lines += ["## Missing or failed runs", ""]
    problems = problem_rows(rows)
    if problems:
        lines += _md_table(["Sweep", "Run", "Task", "Stage", "Status", "Log", "Error"], problems)
    else:
        lines += ["None.", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- CSV, plot, console --------------------------------------------------------------------------------


def write_csv(rows: list[RunRow], path: Path) -> None:
    """``results.csv``: one row per planned run (columns: :data:`CSV_COLUMNS`)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})


def _points(agg: Aggregate, final: bool) -> Iterator[tuple[RowKey, float, float, float]]:
    """(row, tuned %, accuracy, error) per (row, task) with a known tuned %."""
    cells = agg.test if final else agg.search_val
    for (key, task), value in cells.items():
        tuned = agg.tuned.get((key, task), (None, None, None))[0]
        if tuned is None or tuned <= 0:
            continue
        if isinstance(value, Stat):
            yield key, tuned, value.mean, value.std
        else:
            yield key, tuned, value, 0.0


def plot_tuned_vs_accuracy(agg: Aggregate, path: Path) -> str:
    """Draws accuracy against tuned % (log x), one colour and marker per table row; returns what is plotted.

    Final-stage test top-1 (mean ± std over seeds) per (method, task); without final results, the best
    search-stage val top-1 per (method, task).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    final = bool(agg.test)
    points = list(_points(agg, final))
    # Fixed margins: constrained layout would triple the drawing time.
    fig = Figure(figsize=(8, 5.5))
    fig.subplots_adjust(left=0.09, right=0.97, top=0.88, bottom=0.11)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = colormaps["tab10"]
    markers = "osD^vP*Xph"
    by_key: dict[RowKey, list[tuple[float, float, float]]] = defaultdict(list)
    for key, x, y, err in points:
        by_key[key].append((x, y, err))
    for i, key in enumerate(_sorted_keys(by_key)):
        xs, ys, errs = zip(*sorted(by_key[key]), strict=True)
        ax.errorbar(
            xs,
            ys,
            yerr=errs if final else None,
            fmt=markers[i % len(markers)],
            color=colours(i % 10),
            label=key.label,
            capsize=3,
            markersize=6,
            alpha=0.85,
        )
    if points:
        ax.set_xscale("log")
        ax.legend(title="Method", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no successful runs with a tuned % yet", ha="center", va="center", transform=ax.transAxes)
    what = "final test top-1" if final else "search val top-1"
    ax.set_xlabel("Tuned parameters (% of all parameters, log scale)")
    ax.set_ylabel("Test top-1 (%)" if final else "Validation top-1 (%)")
    if final:
        title = "Test top-1 vs tuned parameters\nfinal runs: mean ± std over seeds, one point per method and task"
    else:
        title = "Validation top-1 vs tuned parameters\nno final runs yet: best search run per method and task"
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=120)
    return what


def print_console(agg: Aggregate, counts: dict[str, int]) -> None:
    """A compact rich table of per-method means (FGVC mean, VTAB-1k group means, tasks with results)."""
    from rich.console import Console
    from rich.table import Table

    fgvc, vtab, _ = _task_catalog()
    groups = list(dict.fromkeys(t.group for t in vtab if t.group))
    table = Table(title="Final test top-1 (%), mean over tasks", title_justify="left")
    for column in ("Method", "Tasks", "FGVC", *groups, "VTAB-1k", "Tuned %"):
        table.add_column(column, justify="left" if column == "Method" else "right")
    keys = _sorted_keys([key for key, _ in agg.test] + list(agg.planned))
    tuned = {row[0]: row[2] for row in tuned_rows(agg)}
    for key in keys:
        done = sum(1 for k, _ in agg.test if k == key)
        means = [_mean_of(agg, key, [t.key for t in vtab if t.group == g])[0] for g in groups]
        table.add_row(
            key.label,
            f"{done}/{len(agg.planned.get(key, ()))}",
            _fmt(_mean_of(agg, key, [t.key for t in fgvc])[0]),
            *(_fmt(m) for m in means),
            _fmt(_mean_of(agg, key, [t.key for t in vtab])[0]),
            tuned.get(key.label, DASH).split(" ")[0],
        )
    console = Console()
    if keys:
        console.print(table)
    console.print(
        f"runs: {counts['done']} done, {counts['failed']} failed, {counts['interrupted']} interrupted, "
        f"{counts['missing']} missing of {counts['total']}"
    )


# -- entry point ---------------------------------------------------------------------------------------


def report(sweep_dir: str, out: str | None = None) -> dict[str, Any]:
    """Summarises one sweep, or every sweep below a folder, into a CSV, Markdown tables and a plot.

    Reads each ``manifest.jsonl`` at or below ``sweep_dir`` with the runs' ``result.json`` files and the
    sweeps' ``selection.json``. Accuracy is the final-stage runs' last-epoch test top-1, mean ± population
    std over seeds; failed, interrupted and missing runs are listed, never averaged.

    Writes into ``out``: ``results.csv`` (one row per planned run), ``summary.md`` (FGVC and VTAB-1k tables
    in the VPT paper's layout, other tasks, chosen hyper-parameters, tuned parameters, missing or failed
    runs with their logs), ``chosen/<sweep>/<task>.yaml`` (the chosen configs) and ``tuned_vs_accuracy.png``.

    Args:
        sweep_dir: a sweep folder (holding ``manifest.jsonl``) or a folder holding several sweeps, e.g. one
            per tuning method; their runs share one table with a row per method.
        out: output folder; default ``sweep_dir``.

    Returns:
        Run counts (``total``, ``done``, ``failed``, ``interrupted``, ``missing``) and the paths written
        (``results_csv``, ``summary_md``, ``plot``, ``chosen_configs``), plus ``plotted`` (what the plot's
        y axis shows).

    Raises:
        FileNotFoundError: no ``manifest.jsonl`` at or below ``sweep_dir``.
    """
    root = Path(sweep_dir)
    target = Path(out) if out is not None else root
    rows = collect_runs(root)
    target.mkdir(parents=True, exist_ok=True)
    counts = _counts(Counter(row.status for row in rows))
    agg = aggregate(rows)

    csv_path = target / CSV_FILE
    write_csv(rows, csv_path)
    chosen, copies = copy_chosen(root, target, rows)
    summary_path = target / SUMMARY_FILE
    summary_path.write_text(render_summary(root, rows, agg, chosen, counts))
    plot_path = target / PLOT_FILE
    plotted = plot_tuned_vs_accuracy(agg, plot_path)
    print_console(agg, counts)
    return {
        **counts,
        "results_csv": str(csv_path),
        "summary_md": str(summary_path),
        "plot": str(plot_path),
        "plotted": plotted,
        "chosen_configs": copies,
    }
