"""The VPT json-split layout (FGVC): ``{train,val,test}.json`` mapping image paths to original labels."""

from __future__ import annotations

import json
from pathlib import Path

from lit_multimodal.data.base import DataError, ImageClassificationDataModule, Sample


def read_json_split(path: Path) -> dict[str, object]:
    """Reads one split file: a flat JSON object ``{relative image path: label}``."""
    if not path.is_file():
        raise DataError(f"split file {path} does not exist")
    try:
        with path.open() as handle:
            mapping = json.load(handle)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(mapping, dict):
        raise DataError(f"{path}: expected a JSON object {{image path: label}}, got {type(mapping).__name__}")
    for key, value in mapping.items():
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DataError(f"{path}: label of {key!r} is {value!r}; labels must be integers or strings")
    return mapping


def label_index(values_per_split: dict[str, list[object]]) -> dict[object, int]:
    """Maps original labels to 0..C-1 once, from the sorted union over all splits.

    The official code maps each split file separately, which shifts labels whenever a split lacks a
    class (the real NABirds ``val.json`` lacks 2 of 555); one shared map avoids that.
    """
    union = {v for values in values_per_split.values() for v in values}
    kinds = {type(v) for v in union}
    if len(kinds) > 1:
        raise DataError(f"labels mix types {sorted(k.__name__ for k in kinds)}; use one type in every split")
    return {value: index for index, value in enumerate(sorted(union))}


class JsonSplitDataModule(ImageClassificationDataModule):
    """Images listed in ``<root>/<split>.json`` files, as the official VPT FGVC loader reads them.

    Labels are the datasets' original values (``"001"`` for CUB, raw ids for NABirds, 1-based ints for
    Flowers/Dogs/Cars); they are mapped to 0..C-1 from the sorted union of all split files. A label in
    val/test that train lacks, or a class count other than ``num_classes``, is an error that lists them.

    Args:
        image_root: folder the json keys are relative to, relative to ``root`` (``images`` for CUB and
            NABirds, ``Images`` for Stanford Dogs, empty for Flowers and Cars).
        train_split: split file name (without ``.json``) used for training.
        val_split: split used for validation (None: no validation).
        test_split: split used for testing (None: no test).
        **kwargs: see :class:`~lit_multimodal.data.base.ImageClassificationDataModule`.
    """

    def __init__(
        self,
        root: str,
        num_classes: int,
        image_root: str = "",
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str | None = "test",
        **kwargs,
    ) -> None:
        super().__init__(root=root, num_classes=num_classes, **kwargs)
        self.image_root = image_root
        self.train_split = train_split
        self.val_split = val_split
        self.test_split = test_split
        self._labels: dict[object, int] | None = None

    def split_names(self) -> dict[str, str | None]:
        """The configured split file names per role."""
        return {"train": self.train_split, "val": self.val_split, "test": self.test_split}

    def _split_files(self) -> dict[str, Path]:
        names = [n for n in self.split_names().values() if n]
        return {n: self.root / f"{n}.json" for n in dict.fromkeys(names)}

    def class_index(self) -> dict[object, int]:
        """The original-label → index map, built once from every configured split file."""
        if self._labels is None:
            self._check_root()
            values = {name: list(read_json_split(path).values()) for name, path in self._split_files().items()}
            index = label_index(values)
            train_labels = set(values[self.train_split])
            unseen = {name: sorted(set(v) - train_labels) for name, v in values.items() if set(v) - train_labels}
            if unseen:
                raise DataError(f"labels missing from {self.train_split}.json but present in other splits: {unseen}")
            if len(index) != self.num_classes:
                raise DataError(
                    f"{self.root}: the split files hold {len(index)} classes but num_classes is "
                    f"{self.num_classes}; labels found: {sorted(index)[:20]}{' ...' if len(index) > 20 else ''}"
                )
            self._labels = index
        return self._labels

    def read_split(self, split: str) -> list[Sample]:
        """Reads ``<root>/<split>.json`` into absolute paths and 0-based labels."""
        index = self.class_index()
        mapping = read_json_split(self.root / f"{split}.json")
        base = self.root / self.image_root
        return [(base / rel, index[label]) for rel, label in mapping.items()]
