"""VTAB-1k: the task table, the community list-file layout, stages, bad input, the official resize, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lit_multimodal.cli import main
from lit_multimodal.data import VTAB_TASKS, DataError, ListFileDataModule, VTAB1kDataModule
from lit_multimodal.data.list_file import read_list_file
from lit_multimodal.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lit_multimodal.data.vtab import VTAB_GROUPS, tasks_in_group, vtab_task
from tests.conftest import vtab_config

EXPECTED_CLASSES = {
    "caltech101": 102,
    "cifar": 100,
    "dtd": 47,
    "oxford_flowers102": 102,
    "oxford_iiit_pet": 37,
    "patch_camelyon": 2,
    "sun397": 397,
    "svhn": 10,
    "resisc45": 45,
    "eurosat": 10,
    "dmlab": 6,
    "kitti": 4,
    "smallnorb_azi": 18,
    "smallnorb_ele": 9,
    "dsprites_loc": 16,
    "dsprites_ori": 16,
    "clevr_dist": 6,
    "clevr_count": 8,
    "diabetic_retinopathy": 5,
}
SPLITS = ("train800", "val200", "train800val200", "test")


def write_vtab_task(root: Path, task: str, per_class: int = 1, classes: int | None = None, size: int = 16) -> Path:
    """A tiny task folder in the community layout: ``images/<split>/<6 digits>.jpg`` and ``<split>.txt``."""
    folder = root / task
    n_classes = classes or min(VTAB_TASKS[task].num_classes, 3)
    rng = np.random.default_rng(0)
    for split in SPLITS:
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(n_classes * per_class):
            label = index % n_classes
            rel = f"images/{split}/{index:06d}.jpg"
            colour = np.array([80 * label % 256, 255 - 60 * label % 256, 40 * label % 256], dtype=np.float64)
            pixels = np.clip(colour + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / rel)
            lines.append(f"{rel} {label}\n")
        (folder / f"{split}.txt").write_text("".join(lines))
    return folder


def _module(root: Path, task: str = "kitti", **kwargs) -> VTAB1kDataModule:
    return VTAB1kDataModule(root=str(root), task=task, batch_size=2, num_workers=0, img_size=16, **kwargs)


# -- the task table -------------------------------------------------------------------------------
def test_the_19_tasks_with_class_counts_and_groups():
    assert {name: task.num_classes for name, task in VTAB_TASKS.items()} == EXPECTED_CLASSES
    assert [len(tasks_in_group(g)) for g in VTAB_GROUPS] == [7, 4, 8]
    assert tasks_in_group("Natural") == ["cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet"] + [
        "svhn",
        "sun397",
    ]
    assert tasks_in_group("Specialized") == ["patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"]
    assert tasks_in_group("Structured")[:3] == ["clevr_count", "clevr_dist", "dmlab"]
    # The dict order is the paper's table order: groups are contiguous.
    groups = [task.group for task in VTAB_TASKS.values()]
    assert groups == sorted(groups, key=VTAB_GROUPS.index)
    assert len({task.display for task in VTAB_TASKS.values()}) == 19
    assert VTAB_TASKS["cifar"].display == "CIFAR-100" and VTAB_TASKS["kitti"].test_size == 711
    with pytest.raises(DataError, match="unknown VTAB-1k task 'cifar100'.*caltech101"):
        vtab_task("cifar100")
    with pytest.raises(ValueError, match="unknown VTAB group"):
        tasks_in_group("Natrual")


@pytest.mark.parametrize("task", list(EXPECTED_CLASSES))
def test_every_task_resolves_to_its_class_count(tmp_path, task):
    dm = _module(tmp_path, task)
    assert dm.num_classes == EXPECTED_CLASSES[task]
    assert dm.dataset_name == task and dm.list_dir == tmp_path / task
    assert _module(tmp_path, task, num_classes=EXPECTED_CLASSES[task]).num_classes == EXPECTED_CLASSES[task]


def test_a_different_num_classes_is_an_error(tmp_path):
    with pytest.raises(DataError, match="'dtd' has 47 classes but num_classes is 200"):
        _module(tmp_path, "dtd", num_classes=200)


# -- stages -----------------------------------------------------------------------------------------
def test_stages_map_roles_to_the_official_splits(tmp_path):
    assert _module(tmp_path, stage="search").split_names() == {"train": "train800", "val": "val200", "test": None}
    final = _module(tmp_path)
    assert final.stage == "final"
    assert final.split_names() == {"train": "train800val200", "val": None, "test": "test"}
    assert _module(tmp_path, final_val=True).split_names()["val"] == "val200"


def test_stages_read_the_right_lists(tmp_path):
    write_vtab_task(tmp_path, "kitti", per_class=2, classes=4)
    search = _module(tmp_path, stage="search")
    search.setup("fit")
    assert set(search.datasets) == {"train", "val"}
    assert {p.parent.name for p, _ in search.datasets["train"].samples} == {"train800"}
    assert {p.parent.name for p, _ in search.datasets["val"].samples} == {"val200"}
    assert not search.has_split("test")

    final = _module(tmp_path)
    final.setup("fit")
    final.setup("test")
    assert set(final.datasets) == {"train", "test"}
    assert {p.parent.name for p, _ in final.datasets["train"].samples} == {"train800val200"}
    assert sorted(label for _, label in final.datasets["test"].samples) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert final.val_dataloader() == []  # Lightning skips validation
    images, labels = next(iter(final.train_dataloader()))
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64


# -- list files --------------------------------------------------------------------------------------
def test_list_lines_parse(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("images/train800/000000.jpg 307\r\n\nimages/with space/a b.jpg 2\n  images/x.jpg\t0  \n")
    assert read_list_file(path, num_classes=397) == [
        (tmp_path / "images/train800/000000.jpg", 307),
        (tmp_path / "images/with space/a b.jpg", 2),
        (tmp_path / "images/x.jpg", 0),
    ]


@pytest.mark.parametrize("bad", ["images/train800/000002.jpg", "images/train800/000002.jpg two", "7"])
def test_a_bad_line_names_file_and_line_number(tmp_path, bad):
    folder = write_vtab_task(tmp_path, "kitti", per_class=1, classes=4)
    lines = (folder / "train800.txt").read_text().splitlines()
    lines[2] = bad
    (folder / "train800.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"kitti/train800.txt, line 3: expected .* got '{bad}'"):
        _module(tmp_path, stage="search").setup("fit")


@pytest.mark.parametrize("label", [4, -1])
def test_a_label_outside_the_task_is_an_error(tmp_path, label):
    folder = write_vtab_task(tmp_path, "kitti", per_class=1, classes=4)
    with (folder / "test.txt").open("a") as handle:
        handle.write(f"images/test/000000.jpg {label}\n")
    with pytest.raises(DataError, match=rf"kitti/test.txt, line 5: label {label} is outside 0..3 \(4 classes\)"):
        _module(tmp_path).setup("test")


def test_missing_task_folder_lists_the_present_tasks(tmp_path):
    write_vtab_task(tmp_path, "dtd")
    write_vtab_task(tmp_path, "eurosat")
    (tmp_path / "notes").mkdir()
    with pytest.raises(DataError, match=r"kitti does not exist; task folders present under .*: dtd, eurosat$"):
        _module(tmp_path).setup("fit")
    # root pointing at a task folder instead of the folder of tasks
    with pytest.raises(DataError, match="looks like a single task folder"):
        _module(tmp_path / "dtd", "dtd").setup("fit")
    with pytest.raises(DataError, match="no VTAB-1k task folders under"):
        _module(tmp_path / "notes").setup("fit")
    with pytest.raises(DataError, match="nowhere does not exist"):
        _module(tmp_path / "nowhere").setup("fit")


def test_missing_list_file_names_the_path(tmp_path):
    folder = write_vtab_task(tmp_path, "kitti")
    (folder / "train800val200.txt").unlink()
    with pytest.raises(DataError, match=r"list file .*kitti/train800val200.txt does not exist \(list files there: "):
        _module(tmp_path).setup("fit")


def test_generic_list_module_reads_configured_splits(tmp_path):
    folder = write_vtab_task(tmp_path, "dtd", classes=3)
    dm = ListFileDataModule(
        root=str(folder), num_classes=3, train_split="train800", val_split="val200", test_split=None, num_workers=0
    )
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3 and not dm.has_split("test")


# -- preprocessing ----------------------------------------------------------------------------------
def test_official_resize_is_tf_bilinear_without_antialias_and_deterministic(tmp_path):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    dm = _module(tmp_path)
    for role in ("train", "test"):  # no augmentation for any split
        out = dm.transform_for(role)(image)
        assert out.shape == (3, 16, 16)
        assert torch.equal(out, dm.transform_for(role)(image))
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    resized = F.interpolate(pixels, size=(16, 16), mode="bilinear", align_corners=False, antialias=False)[0]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(dm.transform_for("train")(image), (resized - mean) / std)

    community = _module(tmp_path, interpolation="bicubic", antialias=True).transform_for("test")(image)
    pil = np.asarray(image.resize((16, 16), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    expected = (torch.from_numpy(pil).permute(2, 0, 1) - mean) / std
    torch.testing.assert_close(community, expected)


# -- through the command line --------------------------------------------------------------------
def test_fit_through_the_cli_takes_the_class_count_from_the_task(tmp_path):
    root = tmp_path / "vtab-1k"
    write_vtab_task(root, "kitti", per_class=2, classes=4, size=32)
    path = vtab_config(tmp_path, root)
    main(["fit", "--config", str(path), "--data.task", "kitti"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "success"
    assert result["params"]["trainable"] == 2 * 6 * 64 + 65 * 4  # p * depth * width + head of kitti's 4 classes
    assert 0.0 <= result["metrics"]["test/top1"] <= 1.0
    assert not any(key.startswith("val/") for key in result["metrics"])  # final stage: no validation
