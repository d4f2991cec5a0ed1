"""BCI: HER2 labels from file names, the seeded stratified validation carve, stains, bad input."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_multimodal.data import BCIDataModule, DataError
from lit_multimodal.data.bci import BCI_CLASSES, parse_bci_name, stratified_carve

# Per split and class: how many patches the fixture writes (the real train split is ~3,900 patches).
COUNTS = {"train": {"0": 10, "1+": 20, "2+": 30, "3+": 12}, "test": {"0": 2, "1+": 3, "2+": 3, "3+": 2}}


def write_bci(root: Path, counts: dict[str, dict[str, int]] = COUNTS, size: int = 16) -> Path:
    """A tiny ``BCI_dataset/{HE,IHC}/{train,test}/NNNNN_<split>_<score>.png`` tree (HE and IHC share names)."""
    rng = np.random.default_rng(0)
    index = 0
    for split, per_class in counts.items():
        for score, n in per_class.items():
            for _ in range(n):
                name = f"{index:05d}_{split}_{score}.png"
                for stain, tint in (("HE", (200, 120, 200)), ("IHC", (150, 100, 60))):
                    folder = root / stain / split
                    folder.mkdir(parents=True, exist_ok=True)
                    pixels = np.clip(np.array(tint) + rng.normal(0, 15, (size, size, 3)), 0, 255).astype(np.uint8)
                    Image.fromarray(pixels).save(folder / name)
                index += 1
    return root


@pytest.fixture(scope="module")
def bci_root(tmp_path_factory) -> Path:
    return write_bci(tmp_path_factory.mktemp("bci") / "BCI_dataset")


def _module(root: Path, **kwargs) -> BCIDataModule:
    return BCIDataModule(root=str(root), batch_size=4, num_workers=0, img_size=16, **kwargs)


def _names(samples) -> list[str]:
    return sorted(path.name for path, _ in samples)


@pytest.mark.parametrize(
    ("name", "label"),
    [("00000_train_0.png", 0), ("00017_train_1+.png", 1), ("03895_test_2+.png", 2), ("4_test_3+.png", 3)],
)
def test_labels_parse_from_file_names(name, label):
    assert parse_bci_name(Path(name)) == label


@pytest.mark.parametrize("name", ["00001_train_4+.png", "00001_train_1.png", "00001_val_0.png", "00001_train_0.jpg"])
def test_a_name_off_the_pattern_is_an_error(name):
    with pytest.raises(
        DataError, match=re.escape(f"{name}: file name does not match the BCI pattern NNNNN_{{train|test}}")
    ):
        parse_bci_name(Path(name))


def test_reads_labels_and_splits(bci_root):
    dm = _module(bci_root)
    assert dm.num_classes == 4 and dm.dataset_name == "bci_he"
    dm.setup("fit")
    dm.setup("test")
    counts = {
        role: np.bincount([y for _, y in dm.datasets[role].samples], minlength=4).tolist() for role in dm.datasets
    }
    # val = round(10 % of each class): 1, 2, 3, 1
    assert counts == {"train": [9, 18, 27, 11], "val": [1, 2, 3, 1], "test": [2, 3, 3, 2]}
    assert {path.parent.parent.name for role in dm.datasets for path, _ in dm.datasets[role].samples} == {"HE"}
    assert not set(_names(dm.datasets["train"].samples)) & set(_names(dm.datasets["val"].samples))
    images, labels = next(iter(dm.train_dataloader()))  # default FGVC transforms: resize, random crop, flip
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64


def test_carve_is_deterministic_per_seed_and_differs_across_seeds(bci_root):
    def val_of(seed: int) -> list[str]:
        dm = _module(bci_root, split_seed=seed)
        dm.setup("fit")
        return _names(dm.datasets["val"].samples)

    assert val_of(42) == val_of(42)
    assert val_of(42) != val_of(7)


def test_carve_ignores_listing_order_and_keeps_every_class_in_train():
    samples = [(Path(f"/x/{i:05d}.png"), i % 4) for i in range(40)] + [(Path("/x/single.png"), 3)]
    shuffled = samples[:]
    random.Random(0).shuffle(shuffled)
    assert stratified_carve(samples, 0.1, 5) == stratified_carve(shuffled, 0.1, 5)
    train, val = stratified_carve([(Path("/a.png"), 0), (Path("/b.png"), 1), (Path("/c.png"), 1)], 0.9, 0)
    assert sorted({y for _, y in train}) == [0, 1] and val == [(val[0][0], 1)]


def test_ihc_reads_the_ihc_folder_with_the_same_carve(bci_root):
    he, ihc = _module(bci_root), _module(bci_root, stain="IHC")
    he.setup("fit")
    ihc.setup("fit")
    assert ihc.dataset_name == "bci_ihc"
    assert {path.parent.parent.name for path, _ in ihc.datasets["train"].samples} == {"IHC"}
    assert _names(ihc.datasets["val"].samples) == _names(he.datasets["val"].samples)


def test_no_val_fraction_means_no_validation(bci_root):
    dm = _module(bci_root, val_fraction=0.0)
    dm.setup("fit")
    assert not dm.has_split("val") and dm.val_dataloader() == []
    assert len(dm.datasets["train"]) == sum(COUNTS["train"].values())


def test_bad_file_names_and_folders_are_errors(tmp_path):
    root = write_bci(tmp_path / "BCI_dataset", {"train": {"0": 2, "1+": 2}, "test": {"0": 1}})
    (root / "HE" / "train" / ".DS_Store").write_bytes(b"")  # hidden files are ignored
    _module(root).setup("fit")
    Image.new("RGB", (4, 4)).save(root / "HE" / "train" / "00009_train_score2.png")
    with pytest.raises(DataError, match=r"00009_train_score2.png: file name does not match the BCI pattern"):
        _module(root).setup("fit")
    (root / "HE" / "train" / "00009_train_score2.png").unlink()
    Image.new("RGB", (4, 4)).save(root / "HE" / "train" / "00009_test_0.png")
    with pytest.raises(DataError, match=r"00009_test_0.png: file name says 'test' but the file is in the 'train'"):
        _module(root).setup("fit")
    with pytest.raises(
        DataError, match=r"HE/HE/train does not exist .*BCI_dataset folder; folders under it: test, train"
    ):
        _module(root / "HE").setup("fit")  # root one level too deep
    with pytest.raises(DataError, match="BCI has 4 classes"):
        _module(root, num_classes=5)
    assert BCI_CLASSES == ("0", "1+", "2+", "3+")
