"""``lit-mm predict``: class predictions of a checkpoint for a split or a folder of images, written to disk.

Each image gets one row: its path, the predicted label and probability, the true label where the split
knows it, and the top-k labels with their probabilities, in ``<run dir>/predictions.csv`` and/or
``predictions.jsonl``. Images come from the data's test split (the default) or from ``--files``: a
folder (searched recursively for images), a glob, or one file; they go through the data's evaluation
transform, never through a feature cache.
"""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from lit_multimodal.data.base import DataError, ImageListDataset, collate_skipping_none
from lit_multimodal.training.metrics import class_names
from lit_multimodal.training.results import write_json_atomic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
OutputFormat = Literal["csv", "jsonl", "both"]
PREDICTIONS_STEM = "predictions"


def add_prediction_arguments(parser: Any) -> None:
    """The options of ``lit-mm predict`` (added to its parser only)."""
    parser.add_argument(
        "--files",
        type=str | None,
        default=None,
        help="Images to predict: a folder (searched recursively), a glob or one file; default: the test split.",
    )
    parser.add_argument("--top_k", type=int, default=5, help="How many classes (with probabilities) per image.")
    parser.add_argument(
        "--output", type=OutputFormat, default="both", help="Write predictions.csv, predictions.jsonl or both."
    )


def image_files(spec: str) -> list[Path]:
    """The images named by ``spec``: a folder (recursive, sorted), a glob pattern, or one file."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise DataError(f"--files {spec}: no such file or folder, and no file matches it as a pattern")
    if not found:
        raise DataError(f"--files {spec}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return found


class _Indexed(Dataset):
    """``(image, index)`` pairs, so that rows dropped as corrupt never shift a prediction to another file."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        item = self.dataset[index]
        return None if item is None else (item[0], index)


def prediction_inputs(datamodule: Any, files: str | None) -> tuple[Dataset, list[str], list[int | None]]:
    """The dataset to predict, each item's path and true label (None when unknown)."""
    if files is not None:
        paths = image_files(files)
        transform = datamodule.transform_for("test")
        dataset = ImageListDataset([(p, -1) for p in paths], transform, getattr(datamodule, "skip_corrupt", False))
        return dataset, [str(p) for p in paths], [None] * len(paths)
    datamodule.setup("test")
    dataset = datamodule.datasets["test"]
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return dataset, [str(i) for i in range(len(dataset))], [None] * len(dataset)
    return dataset, [str(p) for p, _ in samples], [int(y) for _, y in samples]


class PredictionWriter(BasePredictionWriter):
    """Collects each batch's probabilities with the item indices; writes the files at the end."""

    def __init__(
        self, run_dir: str, paths: list[str], labels: list[int | None], names: list[str], top_k: int, output: str
    ) -> None:
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self.paths, self.labels, self.names = paths, labels, names
        self.top_k = max(1, min(top_k, len(names)))
        self.output = output
        self.rows: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def write_on_batch_end(
        self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any, batch_idx: int, _: int
    ) -> None:
        """Turns one batch's probabilities into rows."""
        if batch is None:
            return
        probs = prediction.float().cpu()
        top = torch.topk(probs, self.top_k, dim=-1)
        for index, values, classes in zip(batch[1].tolist(), top.values.tolist(), top.indices.tolist(), strict=True):
            true = self.labels[index]
            self.rows.append(
                {
                    "index": index,
                    "path": self.paths[index],
                    "label": self.names[classes[0]],
                    "probability": round(values[0], 6),
                    "true_label": self.names[true] if true is not None and 0 <= true < len(self.names) else None,
                    "top_k": [
                        {"label": self.names[c], "probability": round(v, 6)}
                        for c, v in zip(classes, values, strict=True)
                    ],
                }
            )

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        """Writes ``predictions.csv`` / ``predictions.jsonl`` into the run directory (rank zero, all ranks' rows)."""
        self.rows = _gather_rows(self.rows, trainer.world_size)
        if not trainer.is_global_zero:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.output in ("csv", "both"):
            path = self.run_dir / f"{PREDICTIONS_STEM}.csv"
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path", "label", "probability", "true_label", "top_labels", "top_probabilities"])
                for row in self.rows:
                    writer.writerow(
                        [
                            row["path"],
                            row["label"],
                            row["probability"],
                            row["true_label"] or "",
                            "|".join(t["label"] for t in row["top_k"]),
                            "|".join(str(t["probability"]) for t in row["top_k"]),
                        ]
                    )
            self.written.append(path)
        if self.output in ("jsonl", "both"):
            path = self.run_dir / f"{PREDICTIONS_STEM}.jsonl"
            path.write_text("".join(json.dumps(row) + "\n" for row in self.rows))
            self.written.append(path)


def _gather_rows(rows: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]]:
    """Every process's rows, in dataset order, once each (a distributed sampler may repeat items)."""
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * world_size
        torch.distributed.all_gather_object(gathered, rows)
        rows = [row for part in gathered for row in part]
    unique = {row["index"]: row for row in rows}
    return [unique[i] for i in sorted(unique)]


def run_predict(
    trainer: Any,
    model: Any,
    datamodule: Any,
    ckpt_path: str | None,
    files: str | None = None,
    top_k: int = 5,
    output: str = "both",
) -> PredictionWriter:
    """Predicts the test split (or ``files``) with ``model`` restored from ``ckpt_path`` and writes the files.

    Also writes ``predict_result.json`` (files written, row count, checkpoint) into the run directory.
    """
    dataset, paths, labels = prediction_inputs(datamodule, files)
    num_classes = int(getattr(model.hparams, "num_classes", 0) or getattr(datamodule, "num_classes", 0))
    names = class_names(datamodule, num_classes)
    writer = PredictionWriter(trainer.default_root_dir, paths, labels, names, top_k, output)
    trainer.callbacks.append(writer)
    loader = DataLoader(
        _Indexed(dataset),
        batch_size=getattr(datamodule, "batch_size", 32),
        shuffle=False,
        num_workers=getattr(datamodule, "num_workers", 0),
        collate_fn=collate_skipping_none,
    )
    trainer.predict(model, dataloaders=loader, ckpt_path=ckpt_path, return_predictions=False)
    if trainer.is_global_zero:
        summary = {
            "status": "success",
            "ckpt_path": ckpt_path,
            "files": files,
            "rows": len(writer.rows),
            "written": [p.name for p in writer.written],
        }
        write_json_atomic(Path(trainer.default_root_dir) / "predict_result.json", summary)
        print(f"wrote {len(writer.rows)} predictions to {', '.join(str(p) for p in writer.written)}", flush=True)
    return writer
