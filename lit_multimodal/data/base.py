"""Shared base of the image-classification data: a path-list dataset and a LightningDataModule.

A concrete layout (json splits, VTAB list files, BCI file names) only implements
:meth:`ImageClassificationDataModule.read_split`; transforms, loaders, label checks and bad-input handling
live here once.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from lightning.pytorch import LightningDataModule
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from lit_multimodal.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    Interpolation,
    TrainTransform,
    build_transform,
)
from lit_multimodal.errors import DataError
from lit_multimodal.training.loaders import build_loader, collate_skipping_none

__all__ = [
    "UNREADABLE_IMAGE",
    "DataError",  # re-exported: its home is lit_multimodal.errors
    "ImageClassificationDataModule",
    "ImageListDataset",
    "Sample",
    "collate_skipping_none",  # re-exported: its home is lit_multimodal.training.loaders
    "open_rgb",
    "samples_digest",
    "to_rgb",
]

log = logging.getLogger(__name__)

Sample = tuple[Path, int]


# What opening an image can raise for a bad file: truncated/unknown data (OSError, UnidentifiedImageError) or more
# pixels than PIL's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS, about 178 Mpx by default).
UNREADABLE_IMAGE = (OSError, UnidentifiedImageError, Image.DecompressionBombError)

# Single-channel modes with more than 8 bits per pixel (16-bit PNG/TIFF); convert("RGB") would clip them at 255.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image.convert("RGB")``, except that 16-bit grey images are scaled to 8 bits instead of clipped.

    PIL converts a 16-bit value ``v`` to ``min(v, 255)``, which turns almost every pixel of a 16-bit PNG white;
    here ``v`` becomes ``round(v * 255 / 65535)``. A 32-bit integer image (mode ``I``) whose values all fit in
    0..255 is taken as 8-bit data; otherwise as 16-bit (clipped to 0..65535 first).
    """
    if image.mode not in _WIDE_MODES:
        return image.convert("RGB")
    values = np.asarray(image).astype(np.int64)
    if image.mode == "I" and values.min(initial=0) >= 0 and values.max(initial=0) <= 255:
        grey = values.astype(np.uint8)
    else:
        grey = ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """Reads an image file as 8-bit RGB (see :func:`to_rgb`); raises what :data:`UNREADABLE_IMAGE` lists."""
    with Image.open(path) as img:
        return to_rgb(img)


class ImageListDataset(Dataset):
    """Images from a list of ``(path, label)``.

    Args:
        samples: image paths with 0-based labels.
        transform: PIL → tensor transform.
        skip_corrupt: an unreadable image is skipped with a warning (the collate function drops it)
            instead of raising an error that names the file.
    """

    def __init__(self, samples: Sequence[Sample], transform, skip_corrupt: bool = False) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            image = open_rgb(path)
        except UNREADABLE_IMAGE as err:
            if self.skip_corrupt:
                log.warning("skipping unreadable image %s: %s", path, err)
                return None
            raise DataError(f"cannot read image {path}: {err} (set skip_corrupt: true to skip it)") from None
        return self.transform(image), label

    def fingerprint(self) -> dict[str, str | int]:
        """What this dataset yields: SHA-256 of every (path, size, mtime, label) and the transform's description.

        A changed, added, removed or relabelled image, or any transform parameter, changes it.
        """
        return {"kind": "images", "samples": samples_digest(self.samples), "transform": repr(self.transform)}


def samples_digest(samples: Sequence[Sample]) -> str:
    """SHA-256 over each sample's path, file size, modification time (ns) and label, in order."""
    digest = hashlib.sha256()
    for path, label in samples:
        try:
            stat = Path(path).stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(f"{path}\t{size}\t{mtime}\t{label}\n".encode())
    return digest.hexdigest()


class ImageClassificationDataModule(LightningDataModule, ABC):
    """Base DataModule for image classification from path lists.

    Args:
        root: dataset folder.
        num_classes: number of classes the dataset must have; checked against the labels found.
        batch_size: per-device batch size.
        num_workers: loader worker processes.
        img_size: network input side.
        resize_size: short side before cropping; default ``img_size * 8 / 7`` (256 for 224, as the
            official FGVC transforms).
        train_transform: ``fgvc`` (resize, random crop, flip) or ``resize`` (direct, no augmentation).
        eval_transform: ``center_crop`` (resize, centre crop) or ``resize`` (direct).
        interpolation: resampling filter of the resize.
        mean: normalisation mean (ImageNet for every backbone, as the official).
        std: normalisation std. Use mean = std = (0.5, 0.5, 0.5) for the [-1, 1] inputs the JAX in21k ViT
            was pre-trained on.
        skip_corrupt: skip unreadable images with a warning instead of failing.
        pin_memory: pin host memory in the loaders.
    """

    def __init__(
        self,
        root: str,
        num_classes: int,
        batch_size: int = 128,
        num_workers: int = 4,
        img_size: int = 224,
        resize_size: int | None = None,
        train_transform: TrainTransform = "fgvc",
        eval_transform: EvalTransform = "center_crop",
        interpolation: Interpolation = "bilinear",
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        skip_corrupt: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        positive = (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("img_size", img_size, 1))
        for key, value, least in positive:
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise DataError(f"data.{key} is {value!r}; expected an integer >= {least}")
        self.root = Path(root).expanduser()
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.img_size = img_size
        self.resize_size = resize_size or round(img_size * 8 / 7)
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.interpolation = interpolation
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.skip_corrupt = skip_corrupt
        self.pin_memory = pin_memory
        self.datasets: dict[str, ImageListDataset] = {}

    # -- what a layout implements -------------------------------------------------------------
    def split_names(self) -> dict[str, str | None]:
        """Maps a role (``train``, ``val``, ``test``) to the split name on disk (None: no such split)."""
        return {"train": "train", "val": "val", "test": "test"}

    @abstractmethod
    def read_split(self, split: str) -> list[Sample]:
        """Returns the ``(absolute image path, 0-based label)`` list of one split."""

    # -- shared machinery ---------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        """Short name recorded in results (the root folder's name by default)."""
        return self.root.name

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DataError(f"data.root {self.root} does not exist or is not a folder")

    def _check_samples(self, split: str, samples: list[Sample]) -> None:
        if not samples:
            raise DataError(f"split {split!r} under {self.root} lists no images")
        missing = [str(p) for p, _ in samples if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise DataError(f"split {split!r}: {len(missing)} listed images do not exist: {missing[:3]}{more}")
        bad = sorted({y for _, y in samples if not 0 <= y < self.num_classes})
        if bad:
            raise DataError(f"split {split!r}: labels {bad[:10]} are outside 0..{self.num_classes - 1}")

    def transform_for(self, role: str):
        """The transform of a role: augmenting for ``train``, deterministic otherwise."""
        train = role == "train"
        return build_transform(
            train=train,
            mode=self.train_transform if train else self.eval_transform,
            img_size=self.img_size,
            resize_size=self.resize_size,
            mean=self.mean,
            std=self.std,
            interpolation=self.interpolation,
        )

    def transform_is_deterministic(self, role: str) -> bool:
        """Whether a role's images come out the same every epoch (no random crop or flip)."""
        mode = self.train_transform if role == "train" else self.eval_transform
        return mode in ("resize", "center_crop")

    def split_fingerprint(self, role: str) -> dict[str, object]:
        """What a role's loader yields, for cache keys: layout, dataset, split, samples and transform."""
        if role not in self.datasets:
            self._setup_role(role)
        dataset = self.datasets[role]
        return {
            "data_module": type(self).__name__,
            "dataset": self.dataset_name,
            "split": self.split_names().get(role),
            **dataset.fingerprint(),
        }

    def _setup_role(self, role: str) -> None:
        split = self.split_names().get(role)
        if split is None:
            raise DataError(f"this data module has no {role!r} split (split names: {self.split_names()})")
        self._check_root()
        samples = self.read_split(split)
        self._check_samples(split, samples)
        self.datasets[role] = ImageListDataset(samples, self.transform_for(role), self.skip_corrupt)

    def setup(self, stage: str | None = None) -> None:
        """Reads and checks the split lists the stage needs.

        ``fit`` also reads and checks the test split's list (every listed image must exist), so that a fault
        there stops the run before the first training step instead of after training.
        """
        stage = stage or "fit"
        roles = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for role in roles.get(stage, ("train", "val", "test")):
            if self.has_split(role) and role not in self.datasets:
                self._setup_role(role)
        if stage == "fit":
            samples: dict[str, list[Sample]] = {}
            for role in ("train", "val", "test"):
                listed = getattr(self.datasets.get(role), "samples", None)
                if listed is None and role == "test" and self.has_split(role):
                    listed = self.read_split(self.split_names()[role])
                    self._check_samples(self.split_names()[role], listed)
                if listed is not None:
                    samples[role] = listed
            if "train" in samples:  # not when the train images were swapped for cached features
                self.check_classes(samples)

    def check_classes(self, samples: dict[str, list[Sample]]) -> None:
        """Hook: checks the labels of every split together at ``fit`` (the base checks only their range)."""

    def _loader(self, role: str, shuffle: bool) -> DataLoader:
        if role not in self.datasets:  # e.g. DeepSpeed asks for the train loader during test
            self._setup_role(role)
        return build_loader(
            self.datasets[role],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training loader (order fixed by the run's seed)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation loader; an empty list (Lightning then skips validation) when the layout has no val split."""
        if not self.has_split("val"):
            return []
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test loader."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Prediction loader over the test split."""
        return self._loader("test", shuffle=False)

    def has_split(self, role: str) -> bool:
        """Whether the layout defines a split for ``role``."""
        return self.split_names().get(role) is not None
