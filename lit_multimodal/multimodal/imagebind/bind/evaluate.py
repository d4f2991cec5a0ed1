"""ImageBind evaluation: zero-shot classification over a labelled manifest and cross-modal retrieval (R@k).

Protocols of the paper (§4, B.3–B.4): a class embedding is the mean of its normalised template embeddings,
normalised again (CLIP's recipe; the paper uses CLIP's 80 ImageNet templates for every modality); a file's class
is the nearest class embedding by cosine. Retrieval ranks every key for every query by cosine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lit_multimodal.errors import DataError
from lit_multimodal.files import write_json_atomic

from ..encode import ImageBindEncoder, loader_key
from .loss import retrieval_recalls
from .manifest import read_manifest, read_pairs, resolve_item
from .templates import resolve_templates

__all__ = ["bind_eval", "class_embeddings", "zeroshot_metrics"]


def class_embeddings(text: torch.Tensor, num_classes: int, num_templates: int) -> torch.Tensor:
    """``(C, D)`` class embeddings from ``(C * T, D)`` template embeddings (class-major): mean of unit vectors."""
    per = F.normalize(text.float(), dim=-1).reshape(num_classes, num_templates, -1).mean(dim=1)
    return F.normalize(per, dim=-1)


def zeroshot_metrics(embeddings: torch.Tensor, classes: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix of nearest-class-embedding predictions.

    Args:
        embeddings: ``(N, D)`` file embeddings.
        classes: ``(C, D)`` class embeddings.
        targets: ``(N,)`` class ids.

    Returns:
        ``accuracy``, ``per_class`` (list, None for a class without files), ``confusion`` (rows: true class,
        columns: predicted), ``predictions``.
    """
    scores = F.normalize(embeddings.float(), dim=-1) @ F.normalize(classes.float(), dim=-1).T
    predictions = scores.argmax(dim=1)
    num = len(classes)
    confusion = torch.zeros(num, num, dtype=torch.long)
    confusion.index_put_((targets, predictions), torch.ones_like(targets), accumulate=True)
    totals = confusion.sum(dim=1)
    per_class = [float(confusion[c, c] / totals[c]) if totals[c] else None for c in range(num)]
    return {
        "accuracy": float((predictions == targets).float().mean()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "predictions": predictions.tolist(),
    }


def _plot_confusion(confusion: list[list[int]], classes: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = torch.tensor(confusion, dtype=torch.float64)
    rows = matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(2.0 + 0.55 * len(classes), 1.6 + 0.5 * len(classes)))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print(title: str, rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _labelled(manifest: str, modality: str) -> tuple[list[str], list[str]]:
    path = Path(manifest).expanduser()
    files, labels = [], []
    for record in read_manifest(path):
        where = f"{path}:{record['_line']}"
        if not record.get("file") or record.get("label") in (None, ""):
            raise DataError(f"{where}: a zero-shot record needs 'file' and 'label'")
        if record.get("split") not in (None, "", "val"):
            continue
        files.append(resolve_item(str(record["file"]), modality, path.parent, where))
        labels.append(str(record["label"]))
    if not files:
        raise DataError(f"{path}: no records to evaluate")
    return files, labels


def bind_eval(
    manifest: str,
    modality: Literal["image", "video", "audio", "depth", "thermal", "imu", "text"],
    task: Literal["zeroshot", "retrieval"] = "zeroshot",
    classes: list[str] | None = None,
    templates: str | list[str] = "clip",
    anchor: Literal["image", "video", "audio", "depth", "thermal", "imu", "text"] = "text",
    ks: list[int] | None = None,
    checkpoint: str | None = None,
    preset: Literal["huge", "tiny"] = "huge",
    config: dict[str, Any] | None = None,
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32",
    device: str = "cpu",
    batch_size: int = 32,
    cache_dir: str | None = None,
    out: str | None = None,
) -> dict[str, Any]:
    """Evaluates ImageBind embeddings: zero-shot classification or retrieval, printed as a table and saved as JSON.

    ``zeroshot``: the manifest has ``file`` and ``label`` per record (``split`` other than ``val`` skipped); class
    names are the labels (or ``classes``), each expanded with every template; writes accuracy, per-class accuracy
    and a confusion matrix (JSON and PNG). Chance is 1 / classes.
    ``retrieval``: the manifest is a binding manifest (``anchor``, ``other``; only ``split: val`` records when any
    record has a split); ``modality`` is the ``other`` side, ``anchor`` the other one; R@k in both directions,
    chance 1 / N (and class-level R@1 when records have labels).

    Args:
        manifest: jsonl/csv manifest.
        modality: modality of the files.
        task: ``zeroshot`` or ``retrieval``.
        classes: class names in order (default: the sorted labels).
        templates: ``clip`` (80 CLIP templates), one template such as ``"{}"`` or ``"the sound of a {}"``, or a list.
        anchor: retrieval only: the modality of the ``anchor`` field.
        ks: retrieval cut-offs (default 1, 5, 10).
        checkpoint: ImageBind weights (``imagebind_huge.pth`` or a ``lit-mm bind-export`` file).
        preset: architecture.
        config: preset overrides.
        dtype: encoder dtype.
        device: where the encoder runs.
        batch_size: files per forward pass.
        cache_dir: embedding cache.
        out: output folder for ``zeroshot.json`` + ``confusion.png`` or ``retrieval.json``.

    Returns:
        The metrics.
    """
    encoder = ImageBindEncoder(
        checkpoint=checkpoint, preset=preset, config=config, dtype=dtype, device=device,
        batch_size=batch_size, cache_dir=cache_dir,
    )  # fmt: skip
    folder = Path(out).expanduser() if out else None
    if task == "zeroshot":
        files, labels = _labelled(manifest, modality)
        names = list(classes) if classes else sorted(set(labels))
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise DataError(f"{manifest}: labels {unknown[:5]} are not among the classes {names}")
        prompts = resolve_templates(templates)
        texts = [t.format(name) for name in names for t in prompts]
        emb = encoder.encode({modality: files, "text": texts})
        targets = torch.tensor([names.index(label) for label in labels])
        metrics = zeroshot_metrics(emb[modality], class_embeddings(emb["text"], len(names), len(prompts)), targets)
        result = {
            "task": "zeroshot", "modality": modality, "manifest": str(manifest), "checkpoint": checkpoint,
            "files": len(files), "classes": names, "templates": len(prompts), "chance": 1.0 / len(names),
            "accuracy": metrics["accuracy"],
            "per_class": dict(zip(names, metrics["per_class"], strict=True)),
            "confusion": metrics["confusion"],
        }  # fmt: skip
        rows = [(name, "-" if acc is None else f"{acc:.3f}") for name, acc in result["per_class"].items()]
        rows.append(("all", f"{result['accuracy']:.3f} (chance {result['chance']:.3f})"))
        _print(f"zero-shot {modality} ({len(files)} files, {len(prompts)} templates)", rows, ("class", "accuracy"))
        if folder is not None:
            _plot_confusion(result["confusion"], names, f"{modality} zero-shot, accuracy {result['accuracy']:.3f}",
                            folder / f"confusion_{modality}.png")  # fmt: skip
            result["confusion_png"] = str(folder / f"confusion_{modality}.png")
    elif task == "retrieval":
        a_key, m_key = loader_key(anchor), loader_key(modality)
        pairs = read_pairs(manifest, a_key, m_key)
        if any(p.split for p in pairs):
            pairs = [p for p in pairs if p.split == "val"]
        if len(pairs) < 2:
            raise DataError(f"{manifest}: retrieval needs at least 2 pairs")
        emb = encoder.encode({modality: [p.other for p in pairs], anchor: [p.anchor for p in pairs]})
        labels = [p.label for p in pairs]
        ids = None
        if all(label is not None for label in labels):
            names = sorted(set(labels))
            ids = torch.tensor([names.index(label) for label in labels])
        cut = tuple(ks or (1, 5, 10))
        result = {
            "task": "retrieval", "modality": modality, "anchor": anchor, "manifest": str(manifest),
            "checkpoint": checkpoint, "pairs": len(pairs), "chance_R@1": 1.0 / len(pairs),
            f"{modality}_to_{anchor}": retrieval_recalls(emb[modality], emb[anchor], cut, ids),
            f"{anchor}_to_{modality}": retrieval_recalls(emb[anchor], emb[modality], cut, ids),
        }  # fmt: skip
        rows = [
            (direction, *(f"{value:.3f}" for value in result[direction].values()))
            for direction in (f"{modality}_to_{anchor}", f"{anchor}_to_{modality}")
        ]
        columns = ("direction", *result[f"{modality}_to_{anchor}"].keys())
        _print(f"retrieval over {len(pairs)} pairs (chance R@1 {1 / len(pairs):.4f})", rows, columns)
    else:
        raise ValueError(f"task must be zeroshot or retrieval, got {task!r}")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{task}_{modality}.json"
        write_json_atomic(path, result, sort_keys=False)
        result["json"] = str(path)
    return {k: v for k, v in result.items() if k != "confusion"}
