"""Aggregating run rows over seeds and rendering the paper-style Markdown tables of ``summary.md``."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lit_multimodal.sweeps.plan import SELECTION as SELECTION_FILE
from lit_multimodal.sweeps.rows import RunRow, TaskInfo, task_catalog, task_info
from lit_multimodal.vision.methods import list_methods, method_class

# The VPT paper's rows first, then every other registered method in registration order; labels from the methods.
_PAPER_ORDER = ("full", "linear", "partial", "bias", "vpt_shallow", "vpt_deep")
METHOD_ORDER = (*_PAPER_ORDER, *(m for m in list_methods() if m not in _PAPER_ORDER))
METHOD_NAMES = {name: method_class(name).label for name in METHOD_ORDER}
# The FGVC column headers of the VPT paper's tables; the data table's own names are the datasets' full names.
DASH = "—"


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


def sorted_keys(keys: Iterable[RowKey]) -> list[RowKey]:
    """Row keys in table order: by tuning method as in the paper, then by sweep."""
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
        stale: successful final runs per (row, task key) whose grid point is not the one ``selection.json``
            names now (left by an earlier selection); they are not in ``test``.
    """

    test: dict[tuple[RowKey, str], Stat]
    planned: dict[RowKey, set[str]]
    tuned: dict[tuple[RowKey, str], tuple[float | None, float | None, int | None]]
    search_val: dict[tuple[RowKey, str], float]
    tasks: dict[str, TaskInfo]
    stale: dict[tuple[RowKey, str], list[RunRow]] = field(default_factory=dict)


def aggregate(rows: list[RunRow]) -> Aggregate:
    """Groups the runs into table cells (see :class:`Aggregate`).

    Only final runs of the selected grid point are averaged; a final of another point (``selected`` False)
    goes to ``stale``.
    """
    keys = row_keys(rows)
    stale: dict[tuple[RowKey, str], list[RunRow]] = defaultdict(list)
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
        if row.stage == "final" and row.selected is False:
            stale[cell].append(row)
            continue
        if row.stage == "final" and row.test_top1 is not None:
            values[cell].append(row.test_top1)
        if row.stage == "search" and row.val_top1 is not None:
            search_val[cell] = max(search_val.get(cell, row.val_top1), row.val_top1)
    test = {cell: _stat(found) for cell, found in values.items()}
    return Aggregate(test, dict(planned), tuned, search_val, tasks, dict(stale))


def mean_of(agg: Aggregate, key: RowKey, task_keys: list[str]) -> tuple[float | None, list[str]]:
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


def fmt(value: float | None, spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``, or a dash when missing."""
    return DASH if value is None else format(value, spec)


def _cell(agg: Aggregate, key: RowKey, task: str) -> str:
    stat = agg.test.get((key, task))
    return stat.cell() if stat else DASH


def _family_rows(agg: Aggregate, tasks: list[TaskInfo]) -> list[RowKey]:
    wanted = {t.key for t in tasks}
    with_results = {key for key, task in agg.test if task in wanted}
    return sorted_keys([key for key, planned in agg.planned.items() if planned & wanted] + list(with_results))


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
        mean, lacking = mean_of(agg, key, [t.key for t in fgvc])
        if lacking:
            notes.append(_lacking_note(key, "Mean", lacking))
        body.append([key.label, *(_cell(agg, key, t.key) for t in fgvc), fmt(mean)])
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
        means, values = [], []
        for group in groups:
            mean, lacking = mean_of(agg, key, [t.key for t in vtab if t.group == group])
            if lacking:
                notes.append(_lacking_note(key, group, lacking))
            means.append(fmt(mean))
            values.append(mean)
        of_groups = statistics.fmean(values) if values and None not in values else None
        overall, _ = mean_of(agg, key, [t.key for t in vtab])
        body.append([key.label, *(_cell(agg, key, t.key) for t in vtab), *means, fmt(of_groups), fmt(overall)])
    header = ["Method", *(t.column for t in vtab), *groups, "Group mean", "Mean"]
    lines = ["## VTAB-1k", "", *_md_table(header, body)]
    lines += [
        f"{' / '.join(groups)}: plain mean of the group's per-task means, shown only when every task of the "
        f"group has results; Group mean: mean of the group means (VPT, Convpass, Adapter+ report this); "
        f"Mean: over all {len(vtab)} tasks (NOAH, SSF, V-PETL Bench report this).",
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


def stale_notes(agg: Aggregate) -> list[str]:
    """A note per table cell that has successful finals of a grid point other than the selected one."""
    if not agg.stale:
        return []
    lines = ["Stale finals (a grid point that `selection.json` no longer names; not averaged above):", ""]
    for (key, task), rows in sorted(agg.stale.items(), key=lambda item: (item[0][0].label, item[0][1])):
        points = sorted({f"lr {fmt(r.base_lr, 'g')}, wd {fmt(r.weight_decay, 'g')}" for r in rows})
        lines.append(f"- {key.label}, {task_info(task).column}: {len(rows)} runs of {'; '.join(points)}.")
    return [*lines, ""]


def format_count(count: float) -> str:
    """A parameter count as people write it: ``485``, ``6.2 K``, ``0.855 M``, ``86.6 M``, ``1.20 B``."""
    if count < 1e3:
        return f"{count:.0f}"
    if count < 1e5:
        return f"{count / 1e3:.1f} K"
    if count < 1e9:
        return f"{count / 1e6:.3g} M"
    return f"{count / 1e9:.3g} B"


def tuned_rows(agg: Aggregate) -> list[list[str]]:
    """Per table row: tasks, mean tuned % of all parameters (min–max), % of the backbone, trainable count."""
    per_key: dict[RowKey, list[tuple[float | None, float | None, int | None]]] = defaultdict(list)
    for (key, _), value in agg.tuned.items():
        per_key[key].append(value)
    body = []
    for key in sorted_keys(per_key):
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
                format_count(statistics.fmean(trainable)) if trainable else DASH,
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
    fgvc, vtab, _ = task_catalog()
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
    lines += stale_notes(agg)
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
