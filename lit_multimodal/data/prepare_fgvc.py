"""``lit-mm prepare fgvc``: VPT's json split files, generated from the original FGVC archives.

Reads each dataset's own metadata (text files or ``.mat`` files), checks that every listed image exists
and that the classes are complete, holds out a seeded, per-class stratified 10 % of the official train
split as validation where the dataset has no official one, and writes ``{train,val,test}.json`` in the
format :class:`~lit_multimodal.data.json_split.JsonSplitDataModule` reads: ``{image path relative to the
image root: original label}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lit_multimodal.data.base import DataError
from lit_multimodal.data.fgvc import SPLITS, FGVCInfo, fgvc_info
from lit_multimodal.data.fgvc_readers import READERS, Label, OfficialSplits, Split, preview

log = logging.getLogger(__name__)

INFO_FILE = "prepare_info.json"
OUTPUT_FILES = tuple(f"{split}.json" for split in SPLITS) + (INFO_FILE,)

# -- checks, split, output ----------------------------------------------------------------------------


def missing_images(image_root: Path, keys: Iterable[str]) -> list[str]:
    """The keys with no file under ``image_root``, found by listing each folder once (cheap on network disks)."""
    from rich.console import Console
    from rich.progress import Progress

    by_folder: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        folder, _, name = key.rpartition("/")
        by_folder[folder].append(name)
    total = sum(len(names) for names in by_folder.values())
    missing: list[str] = []
    with Progress(console=Console(stderr=True), transient=True, disable=len(by_folder) < 20) as progress:
        task = progress.add_task(f"checking {total:,} images under {image_root}", total=total)
        for folder in sorted(by_folder):
            try:
                with os.scandir(image_root / folder) as entries:
                    present = {entry.name for entry in entries if entry.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                present = set()
            missing += [f"{folder}/{name}" if folder else name for name in by_folder[folder] if name not in present]
            progress.advance(task, len(by_folder[folder]))
    return sorted(missing)


def stratified_val_split(train: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Holds out ``val_fraction`` of every class of ``train`` as validation, seeded.

    Each class gives ``round(n * val_fraction)`` images (halves rounded up), keeping at least one in train.
    Keys are sorted first, so the result depends only on the contents and the seed, not on listing order.

    Args:
        train: the official train split ``{path: label}``.
        val_fraction: share of every class to hold out.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        The remaining train split and the validation split, both sorted by path.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[Label, list[str]] = defaultdict(list)
    for key in sorted(train):
        by_class[train[key]].append(key)
    held_out: set[str] = set()
    for label in sorted(by_class):
        keys = by_class[label]
        n_val = min(int(len(keys) * val_fraction + 0.5), len(keys) - 1)
        held_out.update(keys[i] for i in rng.permutation(len(keys))[:n_val])
    new_train = {k: train[k] for k in sorted(train) if k not in held_out}
    val = {k: train[k] for k in sorted(held_out)}
    return new_train, val


def _label_sources(official: OfficialSplits, labels: list[Label], counts: Counter | None = None) -> str:
    """Where each label first appears: ``label 9999: <file> line 12 (test image 0001/a.jpg)`` for an error."""
    parts = []
    splits = (("train", official.train), ("val", official.val or {}), ("test", official.test))
    for label in labels:
        split, key = next((name, key) for name, split in splits for key in sorted(split) if split[key] == label)
        images = f", {counts[label]} image{'s' if counts[label] != 1 else ''}" if counts is not None else ""
        where = official.sources.get(key, official.layout)
        parts.append(f"label {label!r} at {where} ({split} image {key}{images})")
    return "; ".join(parts)


def _image_folders(info: FGVCInfo, splits: dict[str, Split]) -> list[str]:
    """Top-level folders (relative to the dataset root) that hold the images."""
    if info.image_root:
        return [info.image_root]
    return sorted({key.split("/", 1)[0] for split in splits.values() for key in split})


def _plan_links(src: Path, out: Path, folders: list[str], overwrite: bool) -> list[tuple[Path, Path]]:
    if out.resolve() == src.resolve():
        return []
    links = []
    for folder in folders:
        link, target = out / folder, (src / folder).resolve()
        if link.exists() or link.is_symlink():
            if link.resolve() == target:
                continue
            if not (link.is_symlink() and overwrite):
                raise DataError(
                    f"{link} exists and is not a link to {target}; remove it (or pass overwrite=True if it is a "
                    "stale link) or write the split files into the source folder"
                )
        links.append((link, target))
    return links


def _dump(path: Path, data: object, indent: int) -> None:
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def prepare_fgvc(
    dataset: str,
    src: str | Path,
    out: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 42,
    overwrite: bool = False,
    *,
    expected_classes: int | None = None,
) -> dict:
    """Writes VPT's ``train.json``/``val.json``/``test.json`` for an FGVC dataset from its original archive.

    Keys are image paths relative to the dataset's image root (``images/`` for CUB and NABirds, ``Images/``
    for Stanford Dogs, the dataset folder itself for Flowers and Cars); values are the original labels as
    VPT's files hold them: CUB ``"001"``..``"200"``, NABirds raw leaf ids, 1-based ints for Flowers, Dogs
    and Cars. Test is the official test split. Flowers keeps its official validation split; the other
    datasets hold out a seeded, per-class stratified ``val_fraction`` of the official train split (VPT's
    90/10 protocol, not VPT's exact validation images). Every listed image must exist, every class must
    appear in train, and the class count must match the dataset table. ``prepare_info.json`` records the
    inputs and counts (no dates: a rerun with the same inputs writes identical files).

    Args:
        dataset: ``cub``, ``nabirds``, ``flowers``, ``dogs`` or ``cars``.
        src: the extracted archive: the folder holding the dataset's metadata files (e.g.
            ``CUB_200_2011/`` with ``images.txt``; for Dogs, ``Images/`` next to ``train_list.mat``; for
            Cars either ``cars_train/``, ``cars_test/``, ``devkit/`` and ``cars_test_annos_withlabels.mat``,
            or ``car_ims/`` with ``cars_annos.mat``).
        out: dataset root to write the split files into (None: ``src``). A different folder gets symbolic
            links to the image folders of ``src``, so that it is a complete dataset root.
        val_fraction: share of every class of the official train split held out as validation
            (ignored for Flowers, which has an official validation split).
        seed: seed of the validation hold-out.
        overwrite: replace existing split files in ``out`` (otherwise they are an error).
        expected_classes: class count the metadata must yield (None: the table's value, e.g. 200 for CUB);
            only for small test copies of a dataset.

    Returns:
        Summary with ``dataset``, ``out``, ``image_root``, ``layout``, ``counts`` and ``classes`` per split,
        and ``num_classes``.

    Raises:
        DataError: a metadata file is missing or malformed (the message names the file and line), images
            are missing, classes are incomplete or their count is wrong, or outputs exist without
            ``overwrite``.
    """
    key = dataset.strip().lower()
    info = fgvc_info(key)
    src = Path(src).expanduser().absolute()
    out = src if out is None else Path(out).expanduser().absolute()
    if not src.is_dir():
        raise DataError(f"{info.name} source folder {src} does not exist or is not a folder")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} is a file")
    existing = [str(out / name) for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise DataError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite true) to replace them")

    official = READERS[key](src, info)
    listed = {**official.train, **official.test, **(official.val or {})}
    if len(listed) != len(official.train) + len(official.test) + len(official.val or {}):
        raise DataError(f"{info.name}: some images are listed in more than one official split ({official.layout})")
    absent = missing_images(official.image_root, listed)
    if absent:
        raise DataError(
            f"{info.name}: {len(absent)} of {len(listed)} images listed in {official.layout} do not exist under "
            f"{official.image_root}: {preview([str(official.image_root / a) for a in absent], 5)}"
        )
    classes = set(listed.values())
    not_in_train = sorted(classes - set(official.train.values()))
    if not_in_train:
        raise DataError(
            f"{info.name}: classes {preview(not_in_train)} have no image in the official train split; "
            f"{_label_sources(official, not_in_train[:3])}"
        )
    expected = info.num_classes if expected_classes is None else expected_classes
    if len(classes) != expected:
        counts = Counter(listed.values())
        rarest = sorted(classes, key=lambda label: (counts[label], str(label)))[:3]
        raise DataError(
            f"{info.name}: {official.layout} yields {len(classes)} classes, expected {expected}; "
            f"labels found: {preview(sorted(classes), 20)}; rarest: {_label_sources(official, rarest, counts)}"
        )

    if official.val is None:
        train, val = stratified_val_split(official.train, val_fraction, seed)
        val_source = f"stratified {val_fraction:g} of the official train split, seed {seed}"
        if not val:
            largest = max(Counter(official.train.values()).values())
            hint = (
                f"val_fraction {0.5 / largest:.3g} or more holds out one image of the classes with {largest}"
                if largest > 1
                else "every class has a single train image, none can be held out"
            )
            raise DataError(
                f"{info.name}: val.json would be empty: val_fraction {val_fraction:g} holds out "
                f"round({val_fraction:g} x n) images of a class of n train images (at least one stays in train), "
                f"and the largest class has {largest}; {hint}"
            )
    else:
        train, val = official.train, official.val
        val_source = "official"
    splits = {"train": train, "val": val, "test": official.test}
    links = _plan_links(src, out, _image_folders(info, splits), overwrite)

    out.mkdir(parents=True, exist_ok=True)
    for link, target in links:
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    counts = {split: len(mapping) for split, mapping in splits.items()}
    class_counts = {split: len(set(mapping.values())) for split, mapping in splits.items()}
    for split, mapping in splits.items():
        _dump(out / f"{split}.json", dict(sorted(mapping.items())), indent=0)
        log.info(
            "%s %s: %s images, %d classes (paper: %s) -> %s",
            info.name,
            split,
            f"{counts[split]:,}",
            class_counts[split],
            f"{info.split_sizes[split]:,}",
            out / f"{split}.json",
        )
    summary = {
        "dataset": key,
        "name": info.name,
        "out": str(out),
        "image_root": info.image_root,
        "layout": official.layout,
        "val": val_source,
        "num_classes": len(classes),
        "counts": counts,
        "classes": class_counts,
    }
    prepare_info = {
        "dataset": key,
        "name": info.name,
        "source": str(src),
        "layout": official.layout,
        "image_root": info.image_root,
        "seed": None if official.val is not None else seed,
        "val_fraction": None if official.val is not None else val_fraction,
        "val": val_source,
        "num_classes": len(classes),
        "counts": counts,
        "classes": class_counts,
        "paper_counts": info.split_sizes,
    }
    _dump(out / INFO_FILE, prepare_info, indent=2)
    return summary
