"""``lit-mm embed`` (build the embedding cache) and ``lit-mm zeroshot`` (score files against text labels)."""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lit_multimodal.paths import make_shareable

from .encode import ImageBindEncoder, loader_key
from .preprocess.errors import InputError
from .preprocess.text import check_texts

__all__ = ["embed", "expand_files", "zeroshot"]


def expand_files(files: list[str] | str) -> list[str]:
    """Expands each entry: a file stays, a folder gives its files (sorted), a glob pattern its matches.

    Args:
        files: entries, or one entry (``--files clips/`` or ``--files 'clips/*.wav'`` on the command line).

    Raises:
        FileNotFoundError: an entry matches nothing; the message names it.
    """
    if isinstance(files, str):
        files = [files]
    out: list[str] = []
    for entry in files:
        path = Path(entry).expanduser()
        if path.is_file():
            out.append(str(path))
        elif path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise FileNotFoundError(f"folder {path} has no files")
            out.extend(found)
        else:
            matches = sorted(p for p in glob.glob(str(path)) if Path(p).is_file())
            if not matches:
                raise FileNotFoundError(f"{entry}: no such file, folder or matching pattern")
            out.extend(matches)
    return out


def _encoder(
    checkpoint: str | None,
    preset: str,
    dtype: str,
    device: str,
    batch_size: int,
    cache_dir: str | None,
    pandagpt: bool,
) -> ImageBindEncoder:
    config = {"pandagpt_skip_audio_scale": True} if pandagpt else None
    return ImageBindEncoder(
        checkpoint=checkpoint,
        preset=preset,
        config=config,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        cache_dir=cache_dir,
    )


def embed(
    modality: Literal["image", "video", "text", "audio", "depth", "thermal", "imu"],
    files: list[str] | str,
    out: str,
    checkpoint: str | None = None,
    preset: Literal["huge", "tiny"] = "huge",
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32",
    device: str = "cpu",
    batch_size: int = 8,
    pandagpt: bool = False,
    table: str | None = None,
) -> dict[str, Any]:
    """Embeds files with ImageBind into the on-disk cache (PandaGPT then trains without ImageBind in memory).

    Files already in the cache (same bytes, weights and preprocessing) are skipped, so the command can be
    re-run after new files arrive or after an interruption.

    Args:
        modality: the files' modality.
        files: files, folders (every file inside) or glob patterns, as a list (``'[a.jpg, b.jpg]'``) or one entry
            (``images/``, ``'clips/*.wav'``); texts for ``text``.
        out: cache folder (pass the same one as ``cache_dir`` of the encoder that reads it).
        checkpoint: ``imagebind_huge.pth``; without it the weights are random (smoke tests only).
        preset: architecture, ``huge`` (the released model) or ``tiny``.
        dtype: compute dtype of the encoder.
        device: where the encoder runs.
        batch_size: files per forward pass.
        pandagpt: PandaGPT's encoder variant (audio embeddings without the ×20 scale).
        table: also write a safetensors file mapping each file path (as given) to its embedding, the
            format of ``PrecomputedEmbedder``.

    Returns:
        Counts, the cache table folder and the optional path table.
    """
    if loader_key(modality) == "text":
        items = [files] if isinstance(files, str) else list(files)
        check_texts(items)
    else:
        items = expand_files(files)
    encoder = _encoder(checkpoint, preset, dtype, device, batch_size, out, pandagpt)
    cache = encoder.cache_for(modality)
    before = len(cache)
    embeddings = encoder.encode({modality: items})[modality]
    summary: dict[str, Any] = {
        "modality": modality,
        "inputs": len(items),
        "newly_encoded": len(cache) - before,
        "cache_table": str(cache.folder),
        "dim": int(embeddings.shape[1]) if len(items) else 0,
    }
    if table is not None:
        from safetensors.torch import save_file

        Path(table).expanduser().parent.mkdir(parents=True, exist_ok=True)
        save_file({item: row.contiguous() for item, row in zip(items, embeddings, strict=True)}, table)
        make_shareable(table)
        summary["table"] = table
    return summary


def zeroshot(
    modality: Literal["image", "video", "audio", "depth", "thermal", "imu"],
    files: list[str] | str,
    labels: list[str] | None = None,
    template: str = "{}",
    checkpoint: str | None = None,
    preset: Literal["huge", "tiny"] = "huge",
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32",
    device: str = "cpu",
    batch_size: int = 8,
    cache_dir: str | None = None,
    top_k: int = 3,
    out: str | None = None,
    plot: str | None = None,
) -> None:
    """Scores each file against text labels by cosine similarity in ImageBind's shared space.

    The text side is the only one trained against language; audio, depth, thermal and IMU are bound to it
    through images only, so a correct label for an audio clip is the emergent cross-modal ability made
    visible. Probabilities are ``softmax(scale · cos)`` with the text encoder's logit scale, as in the
    official zero-shot evaluation.

    Args:
        modality: the files' modality.
        files: files, folders or glob patterns, as a list or one entry (``clips/``, ``'clips/*.wav'``).
        labels: class names, e.g. ``[dog, car, rain]`` (required).
        template: prompt built from each label, e.g. ``"a photo of a {}."`` or ``"the sound of {}"``.
        checkpoint: ``imagebind_huge.pth``; without it the weights are random (smoke tests only).
        preset: architecture, ``huge`` or ``tiny``.
        dtype: compute dtype of the encoder.
        device: where the encoder runs.
        batch_size: files per forward pass.
        cache_dir: embedding cache to read and fill.
        top_k: labels shown per file.
        out: write every file's similarities and probabilities as JSON here.
        plot: write a heat map (files × labels, probabilities) as PNG here.
    """
    if not labels:
        raise InputError("zeroshot needs text labels to score the files against, e.g. --labels '[dog, rain, car]'")
    check_texts(labels, "label")
    if "{}" not in template:
        raise InputError(f"template {template!r} has no {{}} for the label, e.g. 'a photo of a {{}}.'")
    items = expand_files(files)
    encoder = _encoder(checkpoint, preset, dtype, device, batch_size, cache_dir, pandagpt=False)
    prompts = [template.format(label) for label in labels]
    embeddings = encoder.encode({modality: items, "text": prompts})
    cosine = F.normalize(embeddings[modality], dim=-1) @ F.normalize(embeddings["text"], dim=-1).T
    probs = torch.softmax(encoder.text_logit_scale() * cosine, dim=-1)
    _print_table(items, labels, probs, top_k)
    if out is not None:
        rows = [
            {
                "file": item,
                "cosine": dict(zip(labels, c.tolist(), strict=True)),
                "probability": dict(zip(labels, p.tolist(), strict=True)),
            }
            for item, c, p in zip(items, cosine, probs, strict=True)
        ]
        Path(out).expanduser().parent.mkdir(parents=True, exist_ok=True)
        Path(out).expanduser().write_text(
            json.dumps({"modality": modality, "template": template, "results": rows}, indent=2)
        )
    if plot is not None:
        _plot_heatmap(items, labels, probs, modality, plot)


def _print_table(items: list[str], labels: list[str], probs: torch.Tensor, top_k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="zero-shot: top labels per file")
    table.add_column("file")
    for rank in range(min(top_k, len(labels))):
        table.add_column(f"#{rank + 1}")
    for item, row in zip(items, probs, strict=True):
        values, indices = row.topk(min(top_k, len(labels)))
        table.add_row(
            Path(item).name, *(f"{labels[i]} {v:.1%}" for v, i in zip(values.tolist(), indices.tolist(), strict=True))
        )
    Console().print(table)


def _plot_heatmap(items: list[str], labels: list[str], probs: torch.Tensor, modality: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(labels), 1.0 + 0.4 * len(items)))
    image = ax.imshow(probs.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(items)), [Path(item).name for item in items])
    ax.set_title(f"{modality} files vs text labels (probability)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
