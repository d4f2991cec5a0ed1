"""``tuned_vs_accuracy.png``: tuned parameters (log scale) against accuracy, one colour per tuning method."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from lit_multimodal.sweeps.tables import Aggregate, RowKey, Stat, sorted_keys


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
    colours = colormaps["tab20"]
    markers = "osD^vP*Xph<>d8H"  # with 20 colours: 20 rows (every registered method) look distinct
    by_key: dict[RowKey, list[tuple[float, float, float]]] = defaultdict(list)
    for key, x, y, err in points:
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
