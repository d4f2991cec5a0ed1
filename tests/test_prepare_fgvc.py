"""``prepare_fgvc`` on tiny copies of the five FGVC archives, written in their real on-disk layouts."""

from __future__ import annotations

import io
import json
import random
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from lit_multimodal.data.base import DataError
from lit_multimodal.data.fgvc import FGVC_DATASETS, fgvc_info
from lit_multimodal.data.json_split import JsonSplitDataModule
from lit_multimodal.data.prepare_fgvc import INFO_FILE, prepare_fgvc, stratified_val_split

_JPEGS: list[bytes] = []


def jpeg_bytes(index: int) -> bytes:
    """A real 8x8 JPEG (a few colours, encoded once by PIL and reused)."""
    if not _JPEGS:
        for colour in [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)]:
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), colour).save(buffer, format="JPEG")
            _JPEGS.append(buffer.getvalue())
    return _JPEGS[index % len(_JPEGS)]


def write_image(path: Path, index: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(index))


def cell(values: list[str], shape: tuple[int, int]) -> np.ndarray:
    """A MATLAB cell array of strings (savemat writes numpy object arrays as cells)."""
    array = np.empty(shape, dtype=object)
    for i, value in enumerate(values):
        array.flat[i] = value
    return array


def struct_array(records: list[dict[str, object]]) -> np.ndarray:
    """A 1xN MATLAB struct array (savemat writes numpy structured arrays as structs)."""
    names = list(records[0])
    array = np.zeros((1, len(records)), dtype=[(name, "O") for name in names])
    for i, record in enumerate(records):
        array[0, i] = tuple(record[name] for name in names)
    return array


def u8(value: int) -> np.ndarray:
    return np.array([[value]], dtype=np.uint8)


def u16(value: int) -> np.ndarray:
    return np.array([[value]], dtype=np.uint16)


@dataclass
class Archive:
    """A fixture archive and the official splits it encodes (``{key relative to the image root: label}``)."""

    dataset: str
    src: Path
    train: dict[str, object]
    test: dict[str, object]
    val: dict[str, object] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(set(self.train.values()))


# -- the five archives --------------------------------------------------------------------------------

CUB_CLASSES = ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani"]
CUB_TRAIN = [20, 19, 15, 1]  # the last class keeps its only image in train


def write_cub(root: Path, shuffle_lines: bool = False) -> Archive:
    src = root / "CUB_200_2011"
    rows = []
    train, test = {}, {}
    for c, name in enumerate(CUB_CLASSES, start=1):
        folder = f"{c:03d}.{name}"
        for i in range(CUB_TRAIN[c - 1] + 5):
            stem = "_".join(part.capitalize() for part in name.split("_"))
            rel = f"{folder}/{stem}_{i + 10:04d}_{c * 100 + i}.jpg"
            write_image(src / "images" / rel, c)
            is_train = i < CUB_TRAIN[c - 1]
            rows.append((rel, c, is_train))
            (train if is_train else test)[rel] = f"{c:03d}"
    if shuffle_lines:
        random.Random(5).shuffle(rows)
    numbered = list(enumerate(rows, start=1))
    (src / "images.txt").write_text("".join(f"{i} {rel}\n" for i, (rel, _, _) in numbered))
    (src / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, (_, c, _) in numbered))
    (src / "train_test_split.txt").write_text("".join(f"{i} {int(t)}\n" for i, (_, _, t) in numbered))
    (src / "classes.txt").write_text("".join(f"{c} {c:03d}.{n}\n" for c, n in enumerate(CUB_CLASSES, start=1)))
    (src / "bounding_boxes.txt").write_text("".join(f"{i} 60.0 27.0 325.0 304.0\n" for i, _ in numbered))
    return Archive("cub", src, train, test)


NABIRDS_LEAVES = {295: 1, 296: 1, 313: 2, 1010: 2}  # leaf -> parent (0 is the root)


def write_nabirds(root: Path) -> Archive:
    src = root / "nabirds"
    rng = random.Random(3)
    lines_images, lines_labels, lines_split = [], [], []
    train, test = {}, {}
    for k, (leaf, _) in enumerate(NABIRDS_LEAVES.items()):
        for i in range(10 + k + 8):
            image_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            rel = f"{leaf:04d}/{image_id.hex}.jpg"
            write_image(src / "images" / rel, k)
            is_train = i < 10 + k
            lines_images.append(f"{image_id} {rel}\n")
            lines_labels.append(f"{image_id} {leaf}\n")
            lines_split.append(f"{image_id} {int(is_train)}\n")
            (train if is_train else test)[rel] = leaf
    (src / "images.txt").write_text("".join(lines_images))
    (src / "image_class_labels.txt").write_text("".join(lines_labels))
    (src / "train_test_split.txt").write_text("".join(lines_split))
    names = {0: "Birds", 1: "Perching Birds", 2: "Hawks and Eagles", 295: "Black-chinned Hummingbird"}
    names |= {296: "Broad-tailed Hummingbird", 313: "Red-tailed Hawk (Adult)", 1010: "Cooper's Hawk (Immature)"}
    (src / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in names.items()))
    hierarchy = {1: 0, 2: 0, **NABIRDS_LEAVES}
    (src / "hierarchy.txt").write_text("".join(f"{c} {p}\n" for c, p in hierarchy.items()))
    return Archive("nabirds", src, train, test)


def write_flowers(root: Path) -> Archive:
    src = root / "flowers102"
    n_classes, per_class = 3, (2, 2, 6)
    labels = [1 + i % n_classes for i in range(n_classes * sum(per_class))]
    order = list(range(1, len(labels) + 1))
    random.Random(1).shuffle(order)
    by_class: dict[int, list[int]] = {c: [] for c in range(1, n_classes + 1)}
    for number in order:
        by_class[labels[number - 1]].append(number)
    ids = {"trnid": [], "valid": [], "tstid": []}
    for numbers in by_class.values():
        ids["trnid"] += numbers[: per_class[0]]
        ids["valid"] += numbers[per_class[0] : per_class[0] + per_class[1]]
        ids["tstid"] += numbers[per_class[0] + per_class[1] :]
    for number in range(1, len(labels) + 1):
        write_image(src / "jpg" / f"image_{number:05d}.jpg", labels[number - 1])
    scipy.io.savemat(src / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    scipy.io.savemat(src / "setid.mat", {k: np.array([sorted(v)], dtype=np.uint16) for k, v in ids.items()})

    def split(name: str) -> dict[str, object]:
        return {f"jpg/image_{n:05d}.jpg": labels[n - 1] for n in ids[name]}

    return Archive("flowers", src, split("trnid"), split("tstid"), split("valid"))


DOG_CLASSES = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog"]


def write_dogs(root: Path) -> Archive:
    src = root / "stanford_dogs"
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for c, folder in enumerate(DOG_CLASSES, start=1):
        wnid = folder.split("-")[0]
        for i in range(10 + 4):
            rel = f"{folder}/{wnid}_{10074 + 7 * i}.jpg"
            write_image(src / "Images" / rel, c)
            (src / "Annotation" / rel[:-4]).parent.mkdir(parents=True, exist_ok=True)
            (src / "Annotation" / rel[:-4]).write_text("<annotation></annotation>")
            lists["train" if i < 10 else "test"].append((rel, c))
    lists["file"] = lists["train"] + lists["test"]
    for name, rows in lists.items():
        n = len(rows)
        scipy.io.savemat(
            src / f"{name}_list.mat",
            {
                "file_list": cell([rel for rel, _ in rows], (n, 1)),
                "annotation_list": cell([rel[:-4] for rel, _ in rows], (n, 1)),
                "labels": np.array([[c] for _, c in rows], dtype=np.float64),
            },
        )
    return Archive("dogs", src, dict(lists["train"]), dict(lists["test"]))


CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
CAR_TRAIN, CAR_TEST = (11, 10, 9), (5, 5, 5)


def car_record(index: int, label: int | None, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "bbox_x1": u8(39 + index % 10),
        "bbox_y1": u16(116 + index),
        "bbox_x2": u16(569),
        "bbox_y2": u16(375),
    }
    if label is not None:
        record["class"] = u8(label)
    return record | extra


def write_cars_devkit(root: Path, withlabels_in_devkit: bool = False) -> Archive:
    src = root / "stanford_cars"
    (src / "devkit").mkdir(parents=True)
    scipy.io.savemat(src / "devkit" / "cars_meta.mat", {"class_names": cell(CAR_CLASSES, (1, len(CAR_CLASSES)))})
    splits: dict[str, dict[str, object]] = {}
    for split, sizes in (("train", CAR_TRAIN), ("test", CAR_TEST)):
        labels = [c for c, size in enumerate(sizes, start=1) for _ in range(size)]
        random.Random(split).shuffle(labels)  # the real files are not sorted by class
        for i, label in enumerate(labels, start=1):
            write_image(src / f"cars_{split}" / f"{i:05d}.jpg", label)
        records = [car_record(i, c, fname=f"{i:05d}.jpg") for i, c in enumerate(labels, start=1)]
        splits[split] = {f"cars_{split}/{i:05d}.jpg": c for i, c in enumerate(labels, start=1)}
        if split == "train":
            scipy.io.savemat(src / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(records)})
        else:
            unlabelled = [car_record(i, None, fname=f"{i:05d}.jpg") for i in range(1, len(labels) + 1)]
            scipy.io.savemat(src / "devkit" / "cars_test_annos.mat", {"annotations": struct_array(unlabelled)})
            where = src / "devkit" if withlabels_in_devkit else src
            scipy.io.savemat(where / "cars_test_annos_withlabels.mat", {"annotations": struct_array(records)})
    return Archive("cars", src, splits["train"], splits["test"], extra={"prefixes": {"cars_train", "cars_test"}})


def write_cars_all_in_one(root: Path) -> Archive:
    src = root / "stanford_cars_all"
    rows = [(c, 0) for c, n in enumerate(CAR_TRAIN, 1) for _ in range(n)]
    rows += [(c, 1) for c, n in enumerate(CAR_TEST, 1) for _ in range(n)]
    random.Random(2).shuffle(rows)
    records, splits = [], {0: {}, 1: {}}
    for i, (label, is_test) in enumerate(rows, start=1):
        rel = f"car_ims/{i:06d}.jpg"
        write_image(src / rel, label)
        records.append(car_record(i, label, relative_im_path=rel, test=u8(is_test)))
        splits[is_test][rel] = label
    names = cell(CAR_CLASSES, (1, len(CAR_CLASSES)))
    scipy.io.savemat(src / "cars_annos.mat", {"annotations": struct_array(records), "class_names": names})
    return Archive("cars", src, splits[0], splits[1], extra={"prefixes": {"car_ims"}})


WRITERS = {
    "cub": write_cub,
    "nabirds": write_nabirds,
    "flowers": write_flowers,
    "dogs": write_dogs,
    "cars_devkit": write_cars_devkit,
    "cars_all_in_one": write_cars_all_in_one,
}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Archive]:
    root = tmp_path_factory.mktemp("fgvc_archives")
    return {name: writer(root) for name, writer in WRITERS.items()}


def prepare(archive: Archive, out: Path | None, **kwargs) -> dict:
    return prepare_fgvc(archive.dataset, archive.src, out, expected_classes=archive.num_classes, **kwargs)


def read(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())


def half_up(n: int, fraction: float = 0.1) -> int:
    return min(int(n * fraction + 0.5), n - 1)


# -- tests ----------------------------------------------------------------------------------------------


def test_table_matches_the_paper():
    assert {k: v.num_classes for k, v in FGVC_DATASETS.items()} == {
        "cub": 200,
        "nabirds": 555,
        "flowers": 102,
        "dogs": 120,
        "cars": 196,
    }
    assert [k for k, v in FGVC_DATASETS.items() if v.official_val] == ["flowers"]
    assert FGVC_DATASETS["nabirds"].split_sizes == {"train": 21536, "val": 2393, "test": 24633}
    assert fgvc_info("CUB").vpt_folder == "CUB_200_2011"
    with pytest.raises(DataError, match="cub, nabirds, flowers, dogs, cars"):
        fgvc_info("aircraft")


@pytest.mark.parametrize("name", list(WRITERS))
def test_splits_load_with_original_labels(archives, tmp_path, name):
    archive = archives[name]
    info = FGVC_DATASETS[archive.dataset]
    out = tmp_path / info.vpt_folder
    summary = prepare(archive, out)

    splits = {s: read(out / f"{s}.json") for s in ("train", "val", "test")}
    assert summary["counts"] == {s: len(m) for s, m in splits.items()}
    assert summary["num_classes"] == archive.num_classes
    assert splits["test"] == archive.test
    data = JsonSplitDataModule(root=str(out), image_root=info.image_root, num_classes=archive.num_classes)
    data.setup("fit")
    data.setup("test")
    for role in ("train", "val", "test"):
        samples = data.datasets[role].samples
        assert len(samples) == len(splits[role])
        assert all(path.is_file() for path, _ in samples)

    labels = {v for m in splits.values() for v in m.values()}
    if name == "cub":
        assert labels == {f"{c:03d}" for c in range(1, len(CUB_CLASSES) + 1)}
        assert all(key.startswith(f"{label}.") for key, label in splits["train"].items())
    elif name == "nabirds":
        assert labels == set(NABIRDS_LEAVES)
        assert all(key.startswith(f"{label:04d}/") and len(key) == 5 + 32 + 4 for key, label in splits["train"].items())
    else:
        assert labels == set(range(1, archive.num_classes + 1))
        assert all(type(v) is int for v in labels)
    if name.startswith("cars"):
        assert {key.split("/")[0] for m in splits.values() for key in m} == archive.extra["prefixes"]
    if name == "flowers":
        assert splits["val"] == archive.val and splits["train"] == archive.train


@pytest.mark.parametrize("name", ["cub", "nabirds", "dogs", "cars_devkit", "cars_all_in_one"])
def test_val_is_a_stratified_tenth_of_official_train(archives, tmp_path, name):
    archive = archives[name]
    prepare(archive, tmp_path / "out")
    train, val = read(tmp_path / "out" / "train.json"), read(tmp_path / "out" / "val.json")
    assert not set(train) & set(val)
    assert {**train, **val} == archive.train
    official = Counter(archive.train.values())
    held_out = Counter(val.values())
    assert {c: held_out.get(c, 0) for c in official} == {c: half_up(n) for c, n in official.items()}
    assert set(train.values()) == set(official)  # every class keeps images in train
    assert abs(len(val) / len(archive.train) - 0.1) < 0.03
    info = read(tmp_path / "out" / INFO_FILE)
    assert info["seed"] == 42 and info["counts"]["val"] == len(val)


def test_seed_decides_val_and_reruns_are_byte_identical(archives, tmp_path):
    archive = archives["cub"]
    names = ("train.json", "val.json", "test.json", INFO_FILE)
    prepare(archive, tmp_path / "out")
    first = {n: (tmp_path / "out" / n).read_bytes() for n in names}
    prepare(archive, tmp_path / "out", overwrite=True)
    assert {n: (tmp_path / "out" / n).read_bytes() for n in names} == first
    prepare(archive, tmp_path / "other", seed=43)
    assert read(tmp_path / "other" / "val.json") != json.loads(first["val.json"])
    assert read(tmp_path / "other" / "test.json") == json.loads(first["test.json"])


def test_listing_order_does_not_matter(archives, tmp_path):
    shuffled = write_cub(tmp_path / "shuffled", shuffle_lines=True)
    prepare(shuffled, tmp_path / "a")
    prepare(archives["cub"], tmp_path / "b")
    for split in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{split}.json").read_bytes() == (tmp_path / "b" / f"{split}.json").read_bytes()


def test_writes_into_src_by_default(tmp_path):
    archive = write_flowers(tmp_path)
    summary = prepare(archive, None)
    assert summary["out"] == str(archive.src)
    assert read(archive.src / "val.json") == archive.val
    assert read(archive.src / INFO_FILE)["seed"] is None  # Flowers keeps its official val split


def test_stratified_split_ignores_insertion_order():
    items = [(f"c{c}/{i}.jpg", c) for c in range(3) for i in range(12)]
    forward = stratified_val_split(dict(items), 0.1, seed=0)
    backward = stratified_val_split(dict(reversed(items)), 0.1, seed=0)
    assert forward == backward
    assert len(forward[1]) == 3


def test_cars_test_labels_may_sit_in_devkit(tmp_path):
    archive = write_cars_devkit(tmp_path, withlabels_in_devkit=True)
    prepare(archive, tmp_path / "out")
    assert read(tmp_path / "out" / "test.json") == archive.test


# -- errors ---------------------------------------------------------------------------------------------


def test_missing_metadata_file_is_named(tmp_path):
    archive = write_cub(tmp_path)
    (archive.src / "image_class_labels.txt").unlink()
    expected = "images.txt, image_class_labels.txt, train_test_split.txt, classes.txt"
    with pytest.raises(DataError, match=f"{archive.src / 'image_class_labels.txt'} does not exist.*{expected}"):
        prepare(archive, tmp_path / "out")
    with pytest.raises(DataError, match="pass that folder as src"):
        prepare_fgvc("dogs", write_dogs(tmp_path / "parent").src.parent)


def test_malformed_line_names_file_and_line(tmp_path):
    archive = write_cub(tmp_path)
    path = archive.src / "images.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[16] = "17\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"images.txt line 17: expected '<image id> <path>'"):
        prepare(archive, tmp_path / "out")


def test_bad_mat_file_is_named(tmp_path):
    archive = write_dogs(tmp_path)
    scipy.io.savemat(archive.src / "test_list.mat", {"file_list": cell(["a.jpg"], (1, 1))})
    with pytest.raises(DataError, match="test_list.mat: no variable 'labels'"):
        prepare(archive, tmp_path / "out")


def test_missing_image_is_named(tmp_path):
    archive = write_nabirds(tmp_path)
    gone = sorted(archive.test)[3]
    (archive.src / "images" / gone).unlink()
    with pytest.raises(DataError, match=f"1 of {len(archive.train) + len(archive.test)} images .*{gone}"):
        prepare(archive, tmp_path / "out")


def test_existing_outputs_need_overwrite(tmp_path):
    archive = write_flowers(tmp_path)
    prepare(archive, None)
    with pytest.raises(DataError, match=r"train.json.*already exist"):
        prepare(archive, None)
    prepare(archive, None, overwrite=True)


def test_class_count_is_checked_against_the_table(archives, tmp_path):
    with pytest.raises(DataError, match=r"yields 3 classes, expected 102; labels found: \[1, 2, 3\]"):
        prepare_fgvc("flowers", archives["flowers"].src, tmp_path / "out")


def test_class_missing_from_train_is_an_error(tmp_path):
    archive = write_nabirds(tmp_path)
    labels = dict(line.split() for line in (archive.src / "image_class_labels.txt").read_text().splitlines())
    path = archive.src / "train_test_split.txt"
    rows = [line.split() for line in path.read_text().splitlines()]
    path.write_text("".join(f"{i} {'0' if labels[i] == '1010' else flag}\n" for i, flag in rows))
    with pytest.raises(DataError, match=r"classes \[1010\] have no image in the official train split"):
        prepare(archive, tmp_path / "out")


def test_nabirds_labels_must_be_leaves(tmp_path):
    archive = write_nabirds(tmp_path)
    (archive.src / "hierarchy.txt").write_text("1 0\n2 0\n295 1\n296 295\n313 2\n1010 2\n")
    with pytest.raises(DataError, match=r"labels \[295\] are inner nodes"):
        prepare(archive, tmp_path / "out")


def test_cars_errors_name_both_layouts_and_the_labelled_test_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"neither layout.*devkit:.*cars_train_annos.mat.*all-in-one:.*cars_annos.mat"):
        prepare_fgvc("cars", tmp_path / "empty")
    archive = write_cars_devkit(tmp_path)
    (archive.src / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(DataError, match="cars_test_annos_withlabels.mat"):
        prepare(archive, tmp_path / "out")
    shutil.copy(archive.src / "devkit" / "cars_test_annos.mat", archive.src / "cars_test_annos_withlabels.mat")
    with pytest.raises(DataError, match=r"lacks the fields \['class'\]"):
        prepare(archive, tmp_path / "out")


def test_prepare_command_line(archives, tmp_path, capsys):
    from lit_multimodal.cli import main

    archive = archives["cub"]
    out = tmp_path / "CUB_200_2011"
    args = ["prepare", "fgvc", "--dataset", "cub", "--src", str(archive.src), "--out", str(out)]
    main([*args, "--expected_classes", str(archive.num_classes)])
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"]["test"] == len(archive.test)
    assert read(out / "test.json") == archive.test

    with pytest.raises(SystemExit) as exit_info:  # the real CUB has 200 classes: one clear line, exit 1
        main([*args, "--overwrite", "true"])
    assert exit_info.value.code == 1
    assert "200" in capsys.readouterr().err
