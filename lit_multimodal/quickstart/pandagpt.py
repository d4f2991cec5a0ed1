"""PandaGPT quickstart: a tiny LLaMA, tiny ImageBind and digit-image conversations, built on first use.

``lit-mm fit --config configs/quickstart/pandagpt.yaml`` trains LoRA and the projection of a tiny randomly
initialised LLaMA-architecture model (``quickstart:tiny-llama``, resolved by
:mod:`lit_multimodal.quickstart.references` and written once under the cache folder
``$LIT_MM_CACHE`` / ``~/.cache/lit_multimodal``) on a few dozen image-text conversations about scikit-learn's
handwritten digits ("What digit is this?" → "This is the digit 3."). Image embeddings come from a tiny ImageBind
with fixed-seed random weights, cached on disk after the first epoch. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_multimodal.files import write_text_atomic
from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.pandagpt.instructions import InstructionDataModule
from lit_multimodal.paths import cache_dir
from lit_multimodal.quickstart.digits import digit_image, load_digits_arrays
from lit_multimodal.quickstart.tiny_llm import write_tiny_llama

__all__ = [
    "QUICKSTART_LLM",
    "EpochLossPrinter",
    "QuickstartDigitInstructions",
    "QuickstartImageBind",
    "ensure_quickstart_llm",
    "write_digit_instructions",
]

QUICKSTART_LLM = "quickstart:tiny-llama"
LLM_GEOMETRY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
LLM_VERSION = "v1"
QUESTIONS = ("What digit is this?", "Which number is shown in the image?", "Can you read this digit?")


def quickstart_root() -> Path:
    """``<cache>/quickstart/pandagpt``."""
    return cache_dir() / "quickstart" / "pandagpt"


def ensure_quickstart_llm() -> Path:
    """The tiny LLaMA folder of the quickstart, written (seed 0) on first use."""
    folder = quickstart_root() / f"tiny-llama-{LLM_VERSION}"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_tiny_llama(tmp, seed=0, **LLM_GEOMETRY)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)  # a whole folder is published at once (the files writers are per file)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def write_digit_instructions(root: Path, per_digit: int = 4, seed: int = 0) -> Path:
    """Writes ``root/images/*.jpg`` (real scikit-learn digits, 32 px) and ``root/digits.json`` (PandaGPT layout).

    One single-turn conversation per image, ``per_digit`` images of each digit 0–9. Idempotent.

    Args:
        root: output folder.
        per_digit: images per digit.
        seed: which images are picked.

    Returns:
        The json path.
    """
    import numpy as np

    path = root / f"digits-{per_digit}-{seed}.json"
    if path.is_file():
        return path
    images, labels = load_digits_arrays()
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for k, index in enumerate(rng.permutation(np.flatnonzero(labels == digit))[:per_digit]):
            name = f"digit{digit}_{int(index):04d}"
            digit_image(images[index]).save(root / "images" / f"{name}.jpg", quality=95)
            question = QUESTIONS[k % len(QUESTIONS)]
            records.append(
                {
                    "image_name": name,
                    "conversation": [
                        {"from": "human", "value": question},
                        {"from": "gpt", "value": f"This is the digit {digit}."},
                    ],
                }
            )
    write_text_atomic(path, json.dumps(records, indent=1))
    return path


class QuickstartDigitInstructions(InstructionDataModule):
    """Instruction data of the quickstart: digit images with "This is the digit N." answers, built on first use.

    Args:
        per_digit: images per digit (10 digits).
        seed: which images are picked.
        batch_size: micro-batch size.
        num_workers: loader worker processes.
        val_fraction: fraction held out for validation.
    """

    def __init__(
        self, per_digit: int = 4, seed: int = 0, batch_size: int = 8, num_workers: int = 0, val_fraction: float = 0.0
    ) -> None:
        root = quickstart_root() / "data"
        json_path = root / f"digits-{per_digit}-{seed}.json"
        super().__init__(
            json_path=str(json_path),
            image_root=str(root / "images"),
            format="pandagpt",
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            drop_last=False,
        )
        self.per_digit = per_digit
        self.seed = seed

    @property
    def dataset_name(self) -> str:
        """``quickstart_digits``."""
        return "quickstart_digits"

    def read_records(self):
        """Writes the data on first use, then reads it as any PandaGPT json."""
        write_digit_instructions(Path(self.image_root).parent, self.per_digit, self.seed)
        return super().read_records()


class QuickstartImageBind(ImageBindEncoder):
    """Tiny ImageBind (fixed-seed random weights) with its embedding cache under the quickstart folder.

    Args:
        preset: architecture (``tiny`` for the quickstart).
        checkpoint: optional weights.
        config: preset overrides.
        cache_dir: embedding cache; default ``<cache>/quickstart/pandagpt/imagebind-cache``.
    """

    def __init__(
        self,
        preset: str = "tiny",
        checkpoint: str | None = None,
        config: dict[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        folder = cache_dir or str(quickstart_root() / "imagebind-cache")
        super().__init__(checkpoint=checkpoint, preset=preset, config=config, cache_dir=folder, progress=False)


class EpochLossPrinter(Callback):
    """Prints the mean training loss and token accuracy of every epoch (the quickstart's progress line)."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Prints ``epoch N: train/loss ..., train/gen_acc ...``."""
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss_epoch", metrics.get("train/loss"))
        acc = metrics.get("train/gen_acc_epoch", metrics.get("train/gen_acc"))
        if loss is not None and trainer.is_global_zero:
            line = f"epoch {trainer.current_epoch:3d}: train/loss {float(loss):.4f}"
            if acc is not None:
                line += f", train/gen_acc {float(acc):.3f}"
            print(line, flush=True)
