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

import logging
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lit_multimodal.sweeps.plots import plot_tuned_vs_accuracy
from lit_multimodal.sweeps.rows import (
    RunRow,
    as_float,
    as_percent,
    collect_runs,
    find_sweeps,
    relative_path,
    selection_entries,
    status_counts,
    sweep_name,
    task_catalog,
    task_info,
    write_csv,
)
from lit_multimodal.sweeps.tables import (
    DASH,
    METHOD_NAMES,
    Aggregate,
    aggregate,
    fmt,
    mean_of,
    render_summary,
    sorted_keys,
    tuned_rows,
)

log = logging.getLogger(__name__)

CSV_FILE = "results.csv"
SUMMARY_FILE = "summary.md"
PLOT_FILE = "tuned_vs_accuracy.png"
CHOSEN_DIR = "chosen"


def _selection_metric(entry: dict[str, Any]) -> str:
    """The chosen point's validation top-1 in percent; another selection metric is named after the value."""
    for key in ("val_top1", "val/top1"):
        if as_float(entry.get(key)) is not None:
            return fmt(as_percent(entry[key]))
    for key, value in entry.items():
        if "/" in key and as_float(value) is not None:
            return f"{fmt(as_percent(value))} ({key})"
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
        name = sweep_name(sweep, sweep_dir)
        for task, entry in sorted(selection_entries(sweep).items()):
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
                    copied = relative_path(target, out)
                else:
                    copied = f"{DASH} (config not found: {relative_path(source, sweep_dir)})"
            body.append(
                [
                    name,
                    METHOD_NAMES.get(tuning, tuning),
                    task_info(task).column,
                    fmt(as_float(entry.get("base_lr")), "g"),
                    fmt(as_float(entry.get("weight_decay")), "g"),
                    _selection_metric(entry),
                    copied,
                ]
            )
    return body, copies


def print_console(agg: Aggregate, counts: dict[str, int]) -> None:
    """A compact rich table of per-method means (FGVC mean, VTAB-1k group means, tasks with results)."""
    from rich.console import Console
    from rich.table import Table

    fgvc, vtab, _ = task_catalog()
    groups = list(dict.fromkeys(t.group for t in vtab if t.group))
    # Tasks outside FGVC and VTAB-1k (digits, BCI, ...) get a column each: they have no family mean.
    others = sorted((t for t in agg.tasks.values() if t.family == "other"), key=lambda t: t.key)
    table = Table(title="Final test top-1 (%), mean over tasks", title_justify="left")
    for column in ("Method", "Tasks", "FGVC", *groups, "VTAB-1k", *(t.column for t in others), "Tuned %"):
        table.add_column(column, justify="left" if column == "Method" else "right")
    keys = sorted_keys([key for key, _ in agg.test] + list(agg.planned))
    tuned = {row[0]: row[2] for row in tuned_rows(agg)}
    for key in keys:
        done = sum(1 for k, _ in agg.test if k == key)
        means = [mean_of(agg, key, [t.key for t in vtab if t.group == g])[0] for g in groups]
        table.add_row(
            key.label,
            f"{done}/{len(agg.planned.get(key, ()))}",
            fmt(mean_of(agg, key, [t.key for t in fgvc])[0]),
            *(fmt(m) for m in means),
            fmt(mean_of(agg, key, [t.key for t in vtab])[0]),
            *(fmt(agg.test[(key, t.key)].mean) if (key, t.key) in agg.test else DASH for t in others),
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
    counts = status_counts(Counter(row.status for row in rows))
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
