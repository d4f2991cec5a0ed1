"""Quickstart data: scikit-learn's handwritten digits (1,797 real 8×8 scans), no download needed.

The images are written once as 32×32 PNGs in the same json-split layout the FGVC loader reads, so the
quickstart exercises the real data path. Digits 0–4 pre-train the quickstart backbone; digits 5–9 are
the transfer task.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lit_multimodal.data.json_split import JsonSplitDataModule
from lit_multimodal.files import write_text_atomic
from lit_multimodal.paths import cache_dir
from lit_multimodal.training.errors import DataError

SOURCE_DIGITS = (0, 1, 2, 3, 4)
TARGET_DIGITS = (5, 6, 7, 8, 9)
IMAGE_SIDE = 32


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digit images as uint8 ``(N, 8, 8)`` in 0..255 and their labels 0..9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def digit_image(array: np.ndarray) -> Image.Image:
    """One 8×8 digit as a 32×32 RGB image (bilinear upsampling)."""
    gray = Image.fromarray(array, mode="L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
    return gray.convert("RGB")


def split_indices(labels: np.ndarray, digits: tuple[int, ...], fractions: tuple[float, float], seed: int):
    """Seeded stratified train/val/test indices of the images whose label is in ``digits``."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for digit in digits:
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_train = round(len(idx) * fractions[0])
        n_val = round(len(idx) * fractions[1])
        train += idx[:n_train].tolist()
        val += idx[n_train : n_train + n_val].tolist()
        test += idx[n_train + n_val :].tolist()
    return sorted(train), sorted(val), sorted(test)


def write_digits_dataset(
    root: Path, digits: tuple[int, ...] = TARGET_DIGITS, fractions: tuple[float, float] = (0.6, 0.2), seed: int = 0
) -> Path:
    """Writes ``images/<digit>/<index>.png`` and ``{train,val,test}.json`` (label = the digit itself).

    Idempotent: a complete dataset (all three json files present) is left as it is.
    """
    root = Path(root)
    if all((root / f"{s}.json").is_file() for s in ("train", "val", "test")):
        return root
    images, labels = load_digits_arrays()
    splits = dict(zip(("train", "val", "test"), split_indices(labels, digits, fractions, seed), strict=True))
    for split, indices in splits.items():
        mapping = {}
        for i in indices:
            rel = f"{labels[i]}/{i:04d}.png"
            path = root / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            digit_image(images[i]).save(path)
            mapping[rel] = int(labels[i])
        write_text_atomic(root / f"{split}.json", json.dumps(mapping, indent=0))
    return root


class QuickstartDigits(JsonSplitDataModule):
    """Digits 5–9 as a 5-class transfer task, built on first use (≈900 images; 60/20/20 split).

    Args:
        root: where the images and split files are written (default: the framework cache). A folder given
            here must exist (an empty one is filled); a mistyped path is an error, not a new folder.
        num_classes: must be 5.
        batch_size: per-device batch size.
        num_workers: loader workers (0 is fastest for these tiny images).
        img_size: network input side (the images are 32×32).
        **kwargs: see :class:`~lit_multimodal.data.base.ImageClassificationDataModule`.
    """

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 5,
        batch_size: int = 64,
        num_workers: int = 0,
        img_size: int = IMAGE_SIDE,
        **kwargs,
    ) -> None:
        kwargs.setdefault("train_transform", "resize")
        kwargs.setdefault("eval_transform", "resize")
        self.root_given = root is not None
        super().__init__(
            root=root or str(cache_dir() / "quickstart" / "digits5-9"),
            num_classes=num_classes,
            image_root="images",
            batch_size=batch_size,
            num_workers=num_workers,
            img_size=img_size,
            **kwargs,
        )

    @property
    def dataset_name(self) -> str:
        """Name recorded in results."""
        return "digits5-9"

    def prepare_data(self) -> None:
        """Writes the dataset if it is not there yet (into the cache, or into an existing ``root``)."""
        if self.root_given and not self.root.is_dir():
            raise DataError(
                f"data.root {self.root} does not exist; create the folder to write the digits there, "
                "or leave data.root empty to use the framework cache"
            )
        write_digits_dataset(self.root)
