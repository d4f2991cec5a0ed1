"""The list-file layout: ``<folder>/<split>.txt`` with one ``<relative image path> <integer label>`` per line.

This is the format of the community VTAB-1k export (``images/train800/000000.jpg 307``); paths are relative to
the folder holding the list file and labels are already 0-based.
"""

from __future__ import annotations

from pathlib import Path

from lit_multimodal.data.base import DataError, ImageClassificationDataModule, Sample

LINE_FORMAT = "<relative image path> <integer label>"


def read_list_file(path: Path, num_classes: int | None = None) -> list[Sample]:
    """Reads one list file into ``(absolute image path, label)`` pairs.

    The label is the last whitespace-separated field, so paths may contain spaces. Blank lines are ignored.

    Args:
        path: the list file; image paths in it are relative to its folder.
        num_classes: when given, a label outside ``0..num_classes-1`` is an error naming the line.

    Raises:
        DataError: the file is missing, a line does not parse, or a label is out of range; the message names
            the file and the line number.
    """
    if not path.is_file():
        present = sorted(p.name for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        hint = f" (list files there: {', '.join(present)})" if present else ""
        raise DataError(f"list file {path} does not exist{hint}")
    base = path.parent
    samples: list[Sample] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            try:
                if len(parts) != 2:
                    raise ValueError
                label = int(parts[1])
            except ValueError:
                raise DataError(f"{path}, line {lineno}: expected '{LINE_FORMAT}', got {line!r}") from None
            if num_classes is not None and not 0 <= label < num_classes:
                raise DataError(
                    f"{path}, line {lineno}: label {label} is outside 0..{num_classes - 1} "
                    f"({num_classes} classes): {line!r}"
                )
            samples.append((base / parts[0], label))
    return samples


class ListFileDataModule(ImageClassificationDataModule):
    """Images listed in ``<root>/<split>.txt`` files, one ``<relative image path> <integer label>`` per line.

    Paths are relative to the folder of the list file; labels are 0-based class indices. A line that does
    not parse, or a label outside ``0..num_classes-1``, is an error naming the file and line number.

    Args:
        root: folder holding the list files.
        num_classes: number of classes; labels must lie in ``0..num_classes-1``.
        train_split: list file name (without ``.txt``) used for training.
        val_split: list used for validation (None: no validation).
        test_split: list used for testing (None: no test).
        **kwargs: see :class:`~lit_multimodal.data.base.ImageClassificationDataModule`.
    """

    def __init__(
        self,
        root: str,
        num_classes: int,
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str | None = "test",
        **kwargs,
    ) -> None:
        super().__init__(root=root, num_classes=num_classes, **kwargs)
        self.train_split = train_split
        self.val_split = val_split
        self.test_split = test_split

    def split_names(self) -> dict[str, str | None]:
        """The configured list names per role."""
        return {"train": self.train_split, "val": self.val_split, "test": self.test_split}

    @property
    def list_dir(self) -> Path:
        """Folder holding the list files (``root``)."""
        return self.root

    def list_path(self, split: str) -> Path:
        """Path of the list file of ``split``."""
        return self.list_dir / f"{split}.txt"

    def read_split(self, split: str) -> list[Sample]:
        """Reads ``<list_dir>/<split>.txt`` into absolute paths and 0-based labels."""
        return read_list_file(self.list_path(split), self.num_classes)

    def check_classes(self, samples: dict[str, list[Sample]]) -> None:
        """At ``fit``: ``num_classes`` larger than the highest label of every list file + 1 is an error.

        Such trailing classes have no image in any split, so the head would get outputs that never train (a
        typo in ``num_classes``, or list files of another dataset).
        """
        labels = {label for listed in samples.values() for _, label in listed}
        if labels and max(labels) + 1 < self.num_classes:
            files = ", ".join(str(self.list_path(self.split_names()[role])) for role in samples)
            raise DataError(
                f"data.num_classes is {self.num_classes} but the labels of {files} only reach {max(labels)} "
                f"({len(labels)} classes found); set data.num_classes: {max(labels) + 1}"
            )
