"""``tuned_vs_accuracy.png``: tuned parameters (log scale) against accuracy, one colour per tuning method."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lit_multimodal.sweeps.tables import Aggregate, RowKey, Stat, sorted_keys


def _points(agg: Aggregate, final: bool) -> Iterator[tuple[RowKey, str, float, float, float]]:
    """(row, task key, tuned %, accuracy, error) per (row, task) with a known tuned %."""
    cells = agg.test if final else agg.search_val
    for (key, task), value in cells.items():
        tuned = agg.tuned.get((key, task), (None, None, None))[0]
        if tuned is None or tuned <= 0:
            continue
        if isinstance(value, Stat):
            yield key, task, tuned, value.mean, value.std
        else:
            yield key, task, tuned, value, 0.0


def chance_levels(agg: Aggregate, tasks: Iterable[str]) -> dict[float, list[str]]:
    """Chance accuracy in percent (100 / classes) → the plotted tasks at that level, where the class count is known."""
    levels: dict[float, list[str]] = defaultdict(list)
    for task in sorted(set(tasks)):
        info = agg.tasks.get(task)
        if info is not None and info.num_classes:
            levels[100.0 / info.num_classes].append(info.column)
    return dict(levels)


def _log_ticks(ax, xs: list[float]) -> None:
    """Readable x ticks on a log axis that spans less than a decade (matplotlib would print 1 or none)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    low, high = min(xs), max(xs)
    if high / low >= 10:
        return
    ticks = sorted(set(xs)) if len(set(xs)) <= 6 else list(np.geomspace(low, high, 5))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
    ax.set_xlim(low / 1.15, high * 1.15)


def plot_tuned_vs_accuracy(agg: Aggregate, path: Path) -> str:
    """Draws accuracy against tuned % (log x), one colour and marker per table row; returns what is plotted.

    Final-stage test top-1 (mean ± std over seeds) per (method, task); without final results, the best
    search-stage val top-1 per (method, task). A dashed line marks chance (100 / classes) of the plotted
    tasks whose class count is known; a tuned-% range narrower than a decade gets ticks at the points.
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
    colours = colormaps["tab20"]
    markers = "osD^vP*Xph<>d8H"  # with 20 colours: 20 rows (every registered method) look distinct
    by_key: dict[RowKey, list[tuple[float, float, float]]] = defaultdict(list)
    for key, _, x, y, err in points:
        by_key[key].append((x, y, err))
    for i, key in enumerate(sorted_keys(by_key)):
        xs, ys, errs = zip(*sorted(by_key[key]), strict=True)
        ax.errorbar(
            xs,
            ys,
            yerr=errs if final else None,
            fmt=markers[i % len(markers)],
            color=colours(i % 20),
            label=key.label,
            capsize=3,
            markersize=6,
            alpha=0.85,
        )
    if points:
        ax.set_xscale("log")
        _log_ticks(ax, [p[2] for p in points])
        for level, names in sorted(chance_levels(agg, (p[1] for p in points)).items()):
            label = f"chance ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
            ax.axhline(level, color="grey", linestyle="--", linewidth=1, label=label)
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
