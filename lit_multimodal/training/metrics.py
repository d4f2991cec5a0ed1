"""Classification metrics a researcher expects, and how a run reports them.

- :class:`StageMetrics`: top-1, top-5 (only with more than 5 classes, where it says something), macro
  accuracy (mean of per-class accuracies), per-class accuracy and the confusion matrix, all torchmetrics.
- :func:`confusion_figure`: the confusion matrix as a matplotlib figure (row-normalised colours, counts).
- :func:`summary_line`: ``test top-1 72.8 % · val 62.0 % · tuned 0.895 %``, the last line of a fit.
- :class:`EpochLines`: one plain line per epoch when stdout is not a terminal (sweep logs), where the
  progress bar shows nothing useful.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

TOP5_MIN_CLASSES = 6  # with 5 classes or fewer, top-5 accuracy is 100 % by construction


class StageMetrics(nn.Module):
    """The accuracy metrics of one stage (``val`` or ``test``).

    Args:
        num_classes: number of classes.
        detailed: also keep per-class accuracy and the confusion matrix (the test stage).
    """

    def __init__(self, num_classes: int, detailed: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        scalars = {
            "top1": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
            "macro_acc": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="macro"),
        }
        if num_classes >= TOP5_MIN_CLASSES:
            scalars["top5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
        self.scalars = nn.ModuleDict(scalars)
        self.detailed = detailed
        if detailed:
            self.per_class = MulticlassAccuracy(num_classes=num_classes, top_k=1, average="none")
            self.confusion = MulticlassConfusionMatrix(num_classes=num_classes)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds one batch."""
        for metric in self.scalars.values():
            metric.update(logits, labels)
        if self.detailed:
            self.per_class.update(logits, labels)
            self.confusion.update(logits, labels)

    def details(self, class_names: list[str]) -> dict[str, Any]:
        """Per-class accuracy (None for a class with no sample) and the confusion matrix (rows: true class)."""
        counts = self.confusion.compute().long()
        per_class = self.per_class.compute()
        support = counts.sum(1)
        return {
            "classes": class_names,
            "per_class_accuracy": {
                name: (float(acc) if int(n) > 0 else None)
                for name, acc, n in zip(class_names, per_class.tolist(), support.tolist(), strict=True)
            },
            "support": dict(zip(class_names, support.tolist(), strict=True)),
            "confusion_matrix": counts.tolist(),
        }

    def reset_details(self) -> None:
        """Clears the per-class and confusion states (the scalars are reset by Lightning's logging)."""
        if self.detailed:
            self.per_class.reset()
            self.confusion.reset()


def class_names(datamodule: Any, num_classes: int) -> list[str]:
    """Original label names by class index where the data module knows them, else ``0..n-1``."""
    index = getattr(datamodule, "class_index", None)
    if callable(index):
        try:
            mapping = index()
        except Exception:  # noqa: BLE001 - names are cosmetic; indices always work
            mapping = None
        if mapping and len(mapping) == num_classes:
            names = [""] * num_classes
            for label, i in mapping.items():
                names[i] = str(label)
            return names
    return [str(i) for i in range(num_classes)]


def confusion_figure(counts: list[list[int]], names: list[str], title: str = "test confusion matrix"):
    """A matplotlib figure of the confusion matrix: colour = row-normalised rate, text = counts (≤ 30 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = torch.as_tensor(counts, dtype=torch.float64)
    rates = matrix / matrix.sum(1, keepdim=True).clamp(min=1)
    n = len(names)
    side = min(max(4.0, 0.35 * n + 2.0), 24.0)
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 50:
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j] > 0:
                    colour = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def log_figure(loggers: Any, tag: str, figure: Any, step: int) -> None:
    """Adds ``figure`` to every logger whose experiment takes figures (TensorBoard's ``add_figure``)."""
    for logger in loggers:
        add_figure = getattr(getattr(logger, "experiment", None), "add_figure", None)
        if callable(add_figure):
            add_figure(tag, figure, global_step=step, close=False)


def summary_line(metrics: dict[str, float], tuned_percent: float | None = None) -> str:
    """``test top-1 72.8 % · val 62.0 % · tuned 0.895 %`` from a run's metrics (parts that exist only)."""
    parts = []
    if "test/top1" in metrics:
        parts.append(f"test top-1 {100 * metrics['test/top1']:.1f} %")
    if "val/top1" in metrics:
        parts.append(f"{'val' if parts else 'val top-1'} {100 * metrics['val/top1']:.1f} %")
    if tuned_percent is not None:
        parts.append(f"tuned {tuned_percent:.3f} %")
    return " · ".join(parts)


def _format_metric(name: str, value: float) -> str:
    short = name.split("/", 1)[1] if "/" in name else name
    if "top" in short or "acc" in short:
        return f"{name} {100 * value:.1f} %"
    return f"{name} {value:.4g}"


class EpochLines(Callback):
    """Prints one line per finished epoch (``epoch 3/10 · train/loss 0.51 · val/top1 62.0 % ...``).

    Args:
        enabled: None (default) prints only when stdout is not a terminal, e.g. a sweep's ``log.txt``.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = (not sys.stdout.isatty()) if enabled is None else enabled

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Prints the epoch's line; validation of the epoch has run by then."""
        if self.enabled:
            self._print(trainer)

    def _print(self, trainer: Any) -> None:
        metrics = trainer.callback_metrics
        values: dict[str, float] = {}
        for key in sorted(metrics, key=lambda k: k.endswith("_epoch")):  # an _epoch value wins
            if key.startswith(("train/", "val/")) and not key.endswith("_step") and key != "train/lr":
                values[key.removesuffix("_epoch")] = float(metrics[key])
        shown = [_format_metric(name, values[name]) for name in sorted(values)]
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        print(" · ".join([f"epoch {trainer.current_epoch + 1}/{total}", *shown]), flush=True)


def report_test_details(module: Any, stage_metrics: StageMetrics, run_dir: str | None) -> dict[str, Any]:
    """Per-class accuracy and confusion matrix of a finished test epoch; the PNG and the logged figure.

    Called on every rank (the computation synchronises across processes). When the run logs (it has a
    logger, as every ``lit-mm`` run unless ``trainer.logger`` is false), rank zero writes
    ``<run dir>/test_confusion.png``, adds the figure to loggers that take figures (TensorBoard) and logs
    ``test/per_class/<label>`` accuracies to every logger; a bare
    ``Trainer(logger=False)`` leaves no file behind in the working directory.
    """
    trainer = module.trainer
    names = class_names(getattr(trainer, "datamodule", None), stage_metrics.num_classes)
    details = stage_metrics.details(names)
    stage_metrics.reset_details()
    if trainer.is_global_zero and module.loggers:
        import matplotlib.pyplot as plt

        figure = confusion_figure(details["confusion_matrix"], names)
        if run_dir is not None:
            path = Path(run_dir) / "test_confusion.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=120)
            details["confusion_png"] = path.name
        log_figure(module.loggers, "test/confusion_matrix", figure, module.global_step)
        plt.close(figure)
        per_class = {f"test/per_class/{k}": v for k, v in details["per_class_accuracy"].items() if v is not None}
        for logger in module.loggers:
            logger.log_metrics(per_class, step=module.global_step)
    return details
