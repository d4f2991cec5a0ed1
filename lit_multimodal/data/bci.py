"""BCI (Breast Cancer Immunohistochemical): HER2 scoring from the class in each file name.

On disk (bupt-ai-cz/BCI)::

    BCI_dataset/{HE,IHC}/{train,test}/NNNNN_{train|test}_{0|1+|2+|3+}.png

1024 × 1024 PNG patches, HE and IHC registered pairs with the same file name. The HER2 score in the name is
the label (``0`` → 0, ``1+`` → 1, ``2+`` → 2, ``3+`` → 3). There is no official validation split; one is
carved from train, stratified by class and seeded.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np

from lit_multimodal.data.base import DataError, ImageClassificationDataModule, Sample

log = logging.getLogger(__name__)

BCI_CLASSES = ("0", "1+", "2+", "3+")
BCI_NAME = re.compile(r"^(?P<id>\d+)_(?P<split>train|test)_(?P<score>0|1\+|2\+|3\+)\.png$")
BCI_PATTERN = "NNNNN_{train|test}_{0|1+|2+|3+}.png"

Stain = Literal["HE", "IHC"]


def parse_bci_name(path: Path, split: str | None = None) -> int:
    """The 0-based HER2 class of a BCI file name (``00012_train_2+.png`` → 2).

    Args:
        path: the image file.
        split: when given, the ``train``/``test`` word in the name must match it (a file in the wrong folder
            is an error).

    Raises:
        DataError: the name does not match ``NNNNN_{train|test}_{0|1+|2+|3+}.png`` or names another split.
    """
    match = BCI_NAME.match(path.name)
    if match is None:
        raise DataError(f"{path}: file name does not match the BCI pattern {BCI_PATTERN}")
    if split is not None and match["split"] != split:
        raise DataError(f"{path}: file name says {match['split']!r} but the file is in the {split!r} folder")
    return BCI_CLASSES.index(match["score"])


def stratified_carve(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Splits ``samples`` into (train, val) with ``round(fraction * n_c)`` of each class ``c`` in val.

    Deterministic for a seed whatever the input order (samples are sorted by path first). Every class keeps at
    least one image in train, and a class with two or more images puts at least one in val.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: (s[1], str(s[0]))):
        by_class.setdefault(sample[1], []).append(sample)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_class):
        items = by_class[label]
        n_val = round(fraction * len(items))
        if fraction > 0 and len(items) > 1:
            n_val = max(n_val, 1)
        n_val = min(n_val, len(items) - 1)
        chosen = set(rng.permutation(len(items))[:n_val].tolist())
        for index, item in enumerate(items):
            (val if index in chosen else train).append(item)
    return train, val


class BCIDataModule(ImageClassificationDataModule):
    """HER2 score (4 classes) of BCI patches, HE or IHC stain; official test split, seeded validation carve.

    The default transforms are the FGVC ones (train: resize the short side to ``resize_size`` = 256, random
    224 crop, horizontal flip; eval: resize, centre crop): the 1024 px patches are downscaled 4×, and the crop
    and flip are label-preserving for a patch-level HER2 score. Set ``train_transform: resize`` and
    ``eval_transform: resize`` to keep the whole field of view without augmentation.

    Args:
        root: the ``BCI_dataset`` folder (holding ``HE/`` and ``IHC/``).
        stain: ``HE`` (haematoxylin-eosin input) or ``IHC`` (the HER2 immunostain).
        val_fraction: share of each class of the official train split held out for validation (0: train on
            all of it, no validation).
        split_seed: seed of the validation carve; independent of the run's seed and of directory listing
            order. HE and IHC files share names, so both stains get the same carve.
        num_classes: leave empty (4); another value is an error.
        **kwargs: see :class:`~lit_multimodal.data.base.ImageClassificationDataModule`.
    """

    def __init__(
        self,
        root: str,
        stain: Stain = "HE",
        val_fraction: float = 0.1,
        split_seed: int = 42,
        num_classes: int | None = None,
        **kwargs,
    ) -> None:
        if num_classes is not None and num_classes != len(BCI_CLASSES):
            raise DataError(f"BCI has {len(BCI_CLASSES)} classes (HER2 0, 1+, 2+, 3+) but num_classes is {num_classes}")
        if stain not in ("HE", "IHC"):
            raise DataError(f"unknown BCI stain {stain!r}; stains: HE, IHC")
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction must lie in [0, 1); got {val_fraction}")
        super().__init__(root=root, num_classes=len(BCI_CLASSES), **kwargs)
        self.stain = stain
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self._carve: tuple[list[Sample], list[Sample]] | None = None

    @property
    def dataset_name(self) -> str:
        """``bci_he`` or ``bci_ihc``."""
        return f"bci_{self.stain.lower()}"

    def split_names(self) -> dict[str, str | None]:
        """Train and val both come from the official ``train`` folder; test is the official ``test``."""
        return {"train": "train", "val": "val" if self.val_fraction > 0 else None, "test": "test"}

    def read_folder(self, split: str) -> list[Sample]:
        """All images of ``<root>/<stain>/<split>`` with labels from their names (hidden files ignored)."""
        folder = self.root / self.stain / split
        if not folder.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
            raise DataError(
                f"BCI folder {folder} does not exist (data.root must be the BCI_dataset folder; "
                f"folders under it: {', '.join(present) or 'none'})"
            )
        files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
        samples = [(path, parse_bci_name(path, split)) for path in files]
        paired = set(self._paired(folder, files, split))
        return [sample for sample in samples if sample[0] in paired]

    def _paired(self, folder: Path, files: list[Path], split: str) -> list[Path]:
        """``files`` after checking that the other stain holds the same names (when its folder exists).

        A patch without its registered pair is an error naming it; with ``skip_corrupt`` the unpaired patches
        of either stain are left out with a warning that counts and names them, so both stains keep the same
        images (and the same validation carve).
        """
        other_stain = "IHC" if self.stain == "HE" else "HE"
        other = self.root / other_stain / split
        if not other.is_dir():
            return files
        names = {p.name for p in files}
        other_names = {p.name for p in other.iterdir() if not p.name.startswith(".") and p.is_file()}
        lonely = [folder / n for n in sorted(names - other_names)] + [other / n for n in sorted(other_names - names)]
        if not lonely:
            return files
        partner = {str(p): str(other / p.name) if p.parent == folder else str(folder / p.name) for p in lonely}
        shown = "; ".join(f"{p} (no {partner[str(p)]})" for p in lonely[:3])
        more = f" and {len(lonely) - 3} more" if len(lonely) > 3 else ""
        if not self.skip_corrupt:
            raise DataError(
                f"BCI {split}: {len(lonely)} patches have no registered HE/IHC pair: "
                f"{shown}{more} (set skip_corrupt: true to use the paired patches only)"
            )
        log.warning("BCI %s: leaving out %d patches without a registered pair: %s%s", split, len(lonely), shown, more)
        return [p for p in files if p.name in other_names]

    def read_split(self, split: str) -> list[Sample]:
        """``train``/``val`` from the seeded carve of the official train folder, ``test`` from the test folder."""
        if split == "test":
            return self.read_folder("test")
        if self._carve is None:
            self._carve = stratified_carve(self.read_folder("train"), self.val_fraction, self.split_seed)
        train, val = self._carve
        return train if split == "train" else val
