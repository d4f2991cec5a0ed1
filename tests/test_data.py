"""The json-split layout and the shared data base: label mapping, bad input, corrupt images."""

from __future__ import annotations

import json

import pytest
import torch

from lit_multimodal.data import DataError, JsonSplitDataModule
from lit_multimodal.quickstart.digits import TARGET_DIGITS, write_digits_dataset

from .conftest import write_json_split_dataset


def _module(root, num_classes=3, **kwargs) -> JsonSplitDataModule:
    kwargs = {"img_size": 32, "train_transform": "resize", "eval_transform": "resize", "num_workers": 0, **kwargs}
    return JsonSplitDataModule(root=str(root), image_root="images", num_classes=num_classes, batch_size=2, **kwargs)


def test_labels_are_mapped_once_from_the_union_of_splits(tmp_path):
    # val lacks class 0627 (as the real NABirds val.json lacks two classes): its labels must not shift.
    root = write_json_split_dataset(
        tmp_path, {"train": [295, 627, 1010], "val": [295, 1010], "test": [295, 627, 1010]}, per_class=1
    )
    dm = _module(root)
    dm.setup("fit")
    assert dm.class_index() == {295: 0, 627: 1, 1010: 2}
    val_labels = sorted(label for _, label in dm.datasets["val"].samples)
    assert val_labels == [0, 2]
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32


def test_label_missing_from_train_is_an_error(tmp_path):
    root = write_json_split_dataset(
        tmp_path, {"train": ["001", "002"], "val": ["001", "003"], "test": ["001"]}, per_class=1
    )
    with pytest.raises(DataError, match=r"missing from train.json.*'003'"):
        _module(root).setup("fit")


def test_class_count_mismatch_lists_the_labels(tmp_path):
    root = write_json_split_dataset(tmp_path, per_class=1)
    with pytest.raises(DataError, match=r"hold 3 classes but num_classes is 200.*'001', '002', '003'"):
        _module(root, num_classes=200).setup("fit")


def test_missing_root_split_file_and_image_are_named(tmp_path):
    with pytest.raises(DataError, match="nowhere does not exist"):
        _module(tmp_path / "nowhere").setup("fit")
    root = write_json_split_dataset(tmp_path / "a", per_class=1)
    (root / "val.json").unlink()
    with pytest.raises(DataError, match=r"split file .*val.json does not exist"):
        _module(root).setup("fit")
    root = write_json_split_dataset(tmp_path / "b", per_class=1)
    (root / "images" / "002" / "train_0.png").unlink()
    with pytest.raises(DataError, match=r"1 listed images do not exist: \[.*002/train_0.png"):
        _module(root).setup("fit")


def test_invalid_json_names_file_and_line(tmp_path):
    root = write_json_split_dataset(tmp_path, per_class=1)
    (root / "test.json").write_text('{\n "a.png": 1,\n oops\n}')
    with pytest.raises(DataError, match=r"test.json: not valid JSON \(line 3"):
        _module(root).setup("test")


def test_corrupt_image_is_an_error_or_skipped(tmp_path, caplog):
    root = write_json_split_dataset(tmp_path, per_class=2)
    (root / "images" / "001" / "train_0.png").write_bytes(b"not an image")
    dm = _module(root)
    dm.setup("fit")
    with pytest.raises(DataError, match=r"cannot read image .*001/train_0.png"):
        list(dm.train_dataloader())
    dm = _module(root, skip_corrupt=True)
    dm.setup("fit")
    seen = sum(len(labels) for images, labels in dm.train_dataloader())
    assert seen == 5  # 6 listed, 1 skipped
    assert "skipping unreadable image" in caplog.text


def test_fgvc_transforms_crop_and_resize(tmp_path):
    root = write_json_split_dataset(tmp_path, per_class=1, size=40)
    dm = JsonSplitDataModule(root=str(root), image_root="images", num_classes=3, img_size=32, num_workers=0)
    assert dm.resize_size == 37  # 32 * 8 / 7, as 256 for 224
    dm.setup("fit")
    image, _ = dm.datasets["train"][0]
    assert image.shape == (3, 32, 32)


def test_digits_dataset_is_written_in_the_json_layout(tmp_path):
    root = write_digits_dataset(tmp_path / "digits")
    splits = {s: json.loads((root / f"{s}.json").read_text()) for s in ("train", "val", "test")}
    assert set(splits["train"].values()) == set(TARGET_DIGITS)
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["val"]) & set(splits["test"])
    total = sum(len(s) for s in splits.values())
    assert 880 <= total <= 910  # about 180 images per digit
    assert abs(len(splits["train"]) / total - 0.6) < 0.02
    dm = _module(root, num_classes=5)
    dm.setup("fit")
    assert dm.class_index() == {5: 0, 6: 1, 7: 2, 8: 3, 9: 4}
