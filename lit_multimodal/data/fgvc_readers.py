"""Readers of the original FGVC archives: each dataset's own metadata (text or ``.mat`` files) → official splits.

Every error names the file (and line or record) it comes from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lit_multimodal.data.base import DataError
from lit_multimodal.data.fgvc import FGVCInfo

log = logging.getLogger(__name__)

Label = int | str
Split = dict[str, Label]

# Metadata each dataset needs at the top of its extracted folder (Stanford Cars: see CARS_LAYOUTS).
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "cub": ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "images/"),
    "nabirds": ("images.txt", "image_class_labels.txt", "train_test_split.txt", "images/"),
    "flowers": ("imagelabels.mat", "setid.mat", "jpg/"),
    "dogs": ("train_list.mat", "test_list.mat", "Images/"),
}
CARS_LAYOUTS = {
    "devkit": (
        "cars_train/",
        "cars_test/",
        "devkit/cars_train_annos.mat",
        "cars_test_annos_withlabels.mat (or devkit/cars_test_annos_withlabels.mat)",
    ),
    "all-in-one": ("car_ims/", "cars_annos.mat"),
}


@dataclass
class OfficialSplits:
    """What a dataset's metadata says: the official splits, keyed by path relative to ``image_root``."""

    train: Split
    test: Split
    val: Split | None
    image_root: Path
    layout: str
    sources: dict[str, str] = field(default_factory=dict)
    """Where each key's label comes from (``image_class_labels.txt line 12``, ``imagelabels.mat labels[7]``)."""


# -- small readers ------------------------------------------------------------------------------------


def preview(values: Iterable[object], limit: int = 10) -> str:
    """The first ``limit`` values for an error message, with the total when there are more."""
    values = list(values)
    more = f" ... ({len(values)} in all)" if len(values) > limit else ""
    return f"{values[:limit]}{more}"


def _require(src: Path, info: FGVCInfo, dataset: str, name: str) -> Path:
    path = src / name
    if path.exists():
        return path
    expected = ", ".join(REQUIRED_FILES[dataset])
    hint = ""
    with os.scandir(src) as entries:
        folders = sorted(entry.path for entry in entries if entry.is_dir())
    nested = [folder for folder in folders if Path(folder, name).exists()]
    if nested:
        hint = f"; found it under {nested[0]} - pass that folder as src"
    raise DataError(
        f"{info.name} metadata file {path} does not exist; {info.name} expects {expected} in {src} "
        f"(extracted from {', '.join(info.archives)}){hint}"
    )


def _read_pairs(path: Path, form: str) -> dict[str, tuple[str, int]]:
    """Reads a two-column text file into ``{first column: (second column, line number)}``."""
    pairs: dict[str, tuple[str, int]] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path} line {number}: expected {form}, got {line.strip()!r}")
        if fields[0] in pairs:
            raise DataError(f"{path} line {number}: id {fields[0]} already appeared on line {pairs[fields[0]][1]}")
        pairs[fields[0]] = (fields[1], number)
    if not pairs:
        raise DataError(f"{path} is empty; expected lines of {form}")
    return pairs


def _parse_int(text: str, path: Path, number: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path} line {number}: {what} {text!r} is not an integer") from None


def _join_text_splits(
    src: Path, label_of: Callable[[str, Path, int], Label], sources: dict[str, str] | None = None
) -> tuple[Split, Split]:
    """Joins ``images.txt``, ``image_class_labels.txt`` and ``train_test_split.txt`` (CUB and NABirds).

    ``sources``, when given, receives each key's label line (``<image_class_labels.txt> line N``).
    """
    images_path = src / "images.txt"
    labels_path = src / "image_class_labels.txt"
    split_path = src / "train_test_split.txt"
    images = _read_pairs(images_path, "'<image id> <path>'")
    labels = _read_pairs(labels_path, "'<image id> <class id>'")
    is_train = _read_pairs(split_path, "'<image id> <1 (train) or 0 (test)>'")
    train: Split = {}
    test: Split = {}
    seen: dict[str, int] = {}
    for image_id, (rel, number) in images.items():
        for table, path in ((labels, labels_path), (is_train, split_path)):
            if image_id not in table:
                raise DataError(f"{path} has no line for image id {image_id} ({images_path} line {number})")
        if rel in seen:
            raise DataError(f"{images_path} line {number}: {rel} already listed on line {seen[rel]}")
        seen[rel] = number
        class_text, class_line = labels[image_id]
        label = label_of(class_text, labels_path, class_line)
        if sources is not None:
            sources[rel] = f"{labels_path} line {class_line}"
        flag, flag_line = is_train[image_id]
        if flag not in ("0", "1"):
            raise DataError(f"{split_path} line {flag_line}: expected 1 (train) or 0 (test), got {flag!r}")
        (train if flag == "1" else test)[rel] = label
    return train, test


def _load_mat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read it as a MATLAB .mat file ({err})") from None


def _mat_var(mat: dict, path: Path, name: str) -> np.ndarray:
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: no variable {name!r} (found {found})")
    return mat[name]


def _unwrap(value: object) -> np.ndarray:
    """Strips MATLAB cell nesting: a 1-element object array becomes its content."""
    array = np.asarray(value)
    while array.dtype == object and array.size == 1:
        array = np.asarray(array.reshape(-1)[0])
    return array


def _mat_int(value: object, where: str) -> int:
    array = _unwrap(value).reshape(-1)
    if array.size != 1:
        raise DataError(f"{where}: expected one number, got {array.size} values")
    item = array[0].item()  # .item(): int() on a 1x1 array fails under NumPy 2
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    if isinstance(item, bool) or not isinstance(item, int):
        raise DataError(f"{where}: expected an integer, got {item!r}")
    return item


def _mat_str(value: object, where: str) -> str:
    array = _unwrap(value).reshape(-1)
    if array.size != 1 or array.dtype.kind != "U":
        raise DataError(f"{where}: expected one string, got {array!r}")
    return str(array[0]).replace("\\", "/")


def _mat_ints(mat: dict, path: Path, name: str) -> list[int]:
    return [_mat_int(v, f"{path} {name}[{i}]") for i, v in enumerate(_mat_var(mat, path, name).reshape(-1))]


def _mat_records(mat: dict, path: Path, fields: tuple[str, ...]) -> np.ndarray:
    records = _mat_var(mat, path, "annotations").reshape(-1)
    if records.size == 0:
        raise DataError(f"{path}: 'annotations' is empty")
    names = records.dtype.names or ()
    absent = [f for f in fields if f not in names]
    if absent:
        extra = " (the unlabelled test file? use cars_test_annos_withlabels.mat)" if "class" in absent else ""
        raise DataError(f"{path}: 'annotations' lacks the fields {absent} (has {list(names)}){extra}")
    return records


def _check_distinct(path: Path, entries: int, mapping: Split) -> None:
    if len(mapping) != entries:
        raise DataError(f"{path}: {entries} entries name only {len(mapping)} distinct images (duplicates)")


# -- one reader per dataset ---------------------------------------------------------------------------


def _read_cub(src: Path, info: FGVCInfo) -> OfficialSplits:
    for name in REQUIRED_FILES["cub"]:
        _require(src, info, "cub", name)
    classes_path = src / "classes.txt"
    names: dict[str, str] = {}
    for class_id, (folder, number) in _read_pairs(classes_path, "'<class id> <NNN.Class_name>'").items():
        prefix = folder.split(".", 1)[0]
        if not prefix.isdigit() or "." not in folder:
            raise DataError(f"{classes_path} line {number}: expected a class folder 'NNN.Class_name', got {folder!r}")
        names[class_id] = prefix

    def label_of(class_id: str, path: Path, number: int) -> Label:
        if class_id not in names:
            raise DataError(f"{path} line {number}: class id {class_id} is not in {classes_path}")
        return names[class_id]

    sources: dict[str, str] = {}
    train, test = _join_text_splits(src, label_of, sources)
    return OfficialSplits(train, test, None, src / info.image_root, "CUB_200_2011 text files", sources)


def _read_nabirds(src: Path, info: FGVCInfo) -> OfficialSplits:
    for name in REQUIRED_FILES["nabirds"]:
        _require(src, info, "nabirds", name)

    def label_of(class_id: str, path: Path, number: int) -> Label:
        return _parse_int(class_id, path, number, "class id")

    sources: dict[str, str] = {}
    train, test = _join_text_splits(src, label_of, sources)
    hierarchy = src / "hierarchy.txt"
    if hierarchy.is_file():
        parents = {
            _parse_int(parent, hierarchy, number, "parent id")
            for parent, number in _read_pairs(hierarchy, "'<child id> <parent id>'").values()
        }
        inner = sorted(({*train.values(), *test.values()} & parents), key=int)
        if inner:
            listed = {**train, **test}
            first = next(sources[key] for key in sorted(listed) if listed[key] == inner[0])
            raise DataError(
                f"{src / 'image_class_labels.txt'}: labels {preview(inner)} are inner nodes of {hierarchy} "
                f"(parents of other classes; label {inner[0]} at {first}); NABirds images must carry leaf classes"
            )
    return OfficialSplits(train, test, None, src / info.image_root, "nabirds text files", sources)


def _read_flowers(src: Path, info: FGVCInfo) -> OfficialSplits:
    for name in REQUIRED_FILES["flowers"]:
        _require(src, info, "flowers", name)
    labels_path, setid_path = src / "imagelabels.mat", src / "setid.mat"
    labels = _mat_ints(_load_mat(labels_path), labels_path, "labels")
    setid = _load_mat(setid_path)
    splits: dict[str, Split] = {}
    owner: dict[int, str] = {}
    sources: dict[str, str] = {}
    for split, name in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        mapping: Split = {}
        for number in _mat_ints(setid, setid_path, name):
            if not 1 <= number <= len(labels):
                raise DataError(f"{setid_path} {name}: image number {number} is outside 1..{len(labels)}")
            if number in owner:
                raise DataError(f"{setid_path}: image {number} is in both {owner[number]} and {name}")
            owner[number] = name
            mapping[f"jpg/image_{number:05d}.jpg"] = labels[number - 1]
            sources[f"jpg/image_{number:05d}.jpg"] = f"{labels_path} labels[{number - 1}] (image {number})"
        splits[split] = mapping
    return OfficialSplits(splits["train"], splits["test"], splits["val"], src / info.image_root, "setid.mat", sources)


def _read_dogs(src: Path, info: FGVCInfo) -> OfficialSplits:
    for name in REQUIRED_FILES["dogs"]:
        _require(src, info, "dogs", name)
    splits: dict[str, Split] = {}
    sources: dict[str, str] = {}
    for split in ("train", "test"):
        path = src / f"{split}_list.mat"
        mat = _load_mat(path)
        files = _mat_var(mat, path, "file_list").reshape(-1)
        labels = _mat_ints(mat, path, "labels")
        if len(files) != len(labels):
            raise DataError(f"{path}: {len(files)} entries in file_list but {len(labels)} labels")
        keys = [_mat_str(f, f"{path} file_list[{i}]") for i, f in enumerate(files)]
        splits[split] = dict(zip(keys, labels, strict=True))
        sources.update({key: f"{path} labels[{i}]" for i, key in enumerate(keys)})
        _check_distinct(path, len(files), splits[split])
    layout = "train_list.mat/test_list.mat"
    return OfficialSplits(splits["train"], splits["test"], None, src / info.image_root, layout, sources)


def _cars_layout(src: Path) -> str:
    if (src / "cars_annos.mat").is_file():
        return "all-in-one"
    if (src / "devkit" / "cars_train_annos.mat").is_file() or (src / "cars_train").is_dir():
        return "devkit"
    layouts = "; or ".join(f"{name}: {', '.join(files)}" for name, files in CARS_LAYOUTS.items())
    raise DataError(f"Stanford Cars: {src} holds neither layout; expected either {layouts}")


def _read_cars(src: Path, info: FGVCInfo) -> OfficialSplits:
    layout = _cars_layout(src)
    splits: dict[str, Split] = {"train": {}, "test": {}}
    sources: dict[str, str] = {}
    if layout == "all-in-one":
        path = src / "cars_annos.mat"
        records = _mat_records(_load_mat(path), path, ("relative_im_path", "class", "test"))
        for i, rec in enumerate(records):
            where = f"{path} annotations[{i}]"
            rel = _mat_str(rec["relative_im_path"], where + ".relative_im_path")
            test = _mat_int(rec["test"], where + ".test")
            if test not in (0, 1):
                raise DataError(f"{where}.test: expected 0 or 1, got {test}")
            splits["test" if test else "train"][rel] = _mat_int(rec["class"], where + ".class")
            sources[rel] = where + ".class"
        _check_distinct(path, len(records), {**splits["train"], **splits["test"]})
        return OfficialSplits(splits["train"], splits["test"], None, src / info.image_root, "cars_annos.mat", sources)
    train_annos = src / "devkit" / "cars_train_annos.mat"
    test_candidates = [src / "cars_test_annos_withlabels.mat", src / "devkit" / "cars_test_annos_withlabels.mat"]
    test_annos = next((p for p in test_candidates if p.is_file()), None)
    if not train_annos.is_file():
        raise DataError(
            f"Stanford Cars (devkit layout) metadata file {train_annos} does not exist (from car_devkit.tgz); "
            f"the devkit layout needs {', '.join(CARS_LAYOUTS['devkit'])} in {src}"
        )
    if test_annos is None:
        raise DataError(
            f"Stanford Cars (devkit layout): neither {test_candidates[0]} nor {test_candidates[1]} exists; "
            "the test labels ship separately as cars_test_annos_withlabels.mat (devkit/cars_test_annos.mat "
            "has no labels)"
        )
    for split, path in (("train", train_annos), ("test", test_annos)):
        records = _mat_records(_load_mat(path), path, ("class", "fname"))
        for i, rec in enumerate(records):
            where = f"{path} annotations[{i}]"
            rel = f"cars_{split}/{_mat_str(rec['fname'], where + '.fname')}"
            splits[split][rel] = _mat_int(rec["class"], where + ".class")
            sources[rel] = where + ".class"
        _check_distinct(path, len(records), splits[split])
    layout_name = f"devkit ({train_annos.name}, {test_annos.name})"
    return OfficialSplits(splits["train"], splits["test"], None, src / info.image_root, layout_name, sources)


READERS: dict[str, Callable[[Path, FGVCInfo], OfficialSplits]] = {
    "cub": _read_cub,
    "nabirds": _read_nabirds,
    "flowers": _read_flowers,
    "dogs": _read_dogs,
    "cars": _read_cars,
}
