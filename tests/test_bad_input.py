"""Bad input through ``lit-mm``: one ``error:`` line naming the key or file (never a traceback), and faults that
used to pass silently (16-bit images, unpaired BCI patches, trailing classes, empty texts, empty val.json)."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from lit_multimodal.cli import main
from lit_multimodal.data import BCIDataModule, DataError, VTAB1kDataModule
from lit_multimodal.data.base import ImageListDataset, open_rgb
from lit_multimodal.data.image_cache import build_decoded_array, read_skipped
from lit_multimodal.multimodal.imagebind.cache import EmbeddingCache
from lit_multimodal.multimodal.imagebind.preprocess import InputError, load_text

from .conftest import fit_config, tiny_config
from .test_bci import write_bci
from .test_prepare_fgvc import prepare, write_flowers, write_nabirds
from .test_vtab import write_vtab_task


def _exit(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


def _one_error_line(out: str) -> str:
    """The single ``error:`` line of a failed command; no traceback anywhere."""
    assert "Traceback" not in out and "Caught " not in out, out
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


# -- settings -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model.init_args.backbone.arch", "vit_base_patch16_2244"],
            "model.backbone.arch 'vit_base_patch16_2244' is not a timm architecture; did you mean vit_base_patch16_224",
        ),
        (["--model.init_args.num_prompts", "0"], "model.num_prompts is 0; expected at least 1 for tuning vpt_deep"),
        (["--model.init_args.num_prompts", "-3"], "model.num_prompts is -3"),
        (["--data.init_args.batch_size", "-4"], "data.batch_size is -4; expected an integer >= 1"),
        (["--data.init_args.num_workers", "-1"], "data.num_workers is -1; expected an integer >= 0"),
        (["--model.init_args.optim.base_lr", "-0.5"], "model.optim.base_lr is -0.5; expected a learning rate >= 0"),
        (["--model.init_args.optim.weight_decay", "-1"], "model.optim.weight_decay is -1.0"),
    ],
    ids=["arch", "prompts-0", "prompts-negative", "batch", "workers", "lr", "weight-decay"],
)
def test_a_bad_setting_is_one_line(tmp_path, tiny_dataset, capsys, args, message):
    code, out = _exit(["fit", "--config", str(tiny_config(tmp_path, tiny_dataset)), *args], capsys)
    assert code == 1
    assert message in _one_error_line(out)


def test_a_text_file_named_npz_is_called_text(tmp_path, tiny_dataset, capsys):
    weights = tmp_path / "ViT-B_16.npz"
    weights.write_text("<html>404 Not Found</html>\n")
    config = tiny_config(tmp_path, tiny_dataset)
    code, out = _exit(["fit", "--config", str(config), "--model.init_args.backbone.checkpoint", str(weights)], capsys)
    line = _one_error_line(out)
    assert code == 1 and "pickled" not in line
    assert f"{weights}: the file is a text file (starts with '<html>404 Not Found</html>')" in line


# -- data errors while training ---------------------------------------------------------------------------------------
def test_an_error_inside_a_loader_worker_is_one_line(tmp_path, tiny_dataset, capsys):
    bad = tiny_dataset / "images" / "002" / "train_1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    config = tiny_config(tmp_path, tiny_dataset)
    code, out = _exit(["fit", "--config", str(config), "--data.init_args.num_workers", "1"], capsys)
    assert code == 1
    assert _one_error_line(out).startswith(f"error: cannot read image {bad}: ")
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "failed" and result["error"].startswith(f"DataError: cannot read image {bad}: ")
    assert "\n" not in result["error"]


def test_nan_loss_stops_with_one_line(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset)
    args = ["--model.init_args.optim.base_lr", "1e30", "--model.init_args.optim.warmup_epochs", "0"]
    code, out = _exit(["fit", "--config", str(config), "--trainer.precision", "32-true", *args], capsys)
    assert code == 1
    assert "training loss is nan at epoch 0" in _one_error_line(out)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("skip", [False, True])
def test_decompression_bomb_is_an_error_or_skipped(tmp_path, tiny_dataset, capsys, monkeypatch, skip):
    # PIL refuses images over 2 x MAX_IMAGE_PIXELS (about 178 Mpx by default); lowered here to keep the image tiny.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1100)  # 32 x 32 images pass, 64 x 64 ones exceed 2200
    big = tiny_dataset / "images" / "001" / "train_2.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(big)
    config = tiny_config(tmp_path, tiny_dataset)
    args = ["fit", "--config", str(config), "--trainer.max_epochs", "1", "--data.init_args.skip_corrupt", str(skip)]
    if not skip:
        code, out = _exit(args, capsys)
        assert code == 1
        line = _one_error_line(out)
        assert f"cannot read image {big}: " in line and "decompression bomb" in line
        return
    main(args)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "success"


def test_a_missing_test_image_stops_fit_before_training(tmp_path, tiny_dataset, capsys):
    gone = tiny_dataset / "images" / "003" / "test_1.png"
    gone.unlink()
    code, out = _exit(["fit", "--config", str(tiny_config(tmp_path, tiny_dataset))], capsys)
    assert code == 1
    assert "split 'test': 1 listed images do not exist" in _one_error_line(out) and str(gone) in out
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


def test_num_classes_above_the_labels_of_list_files_is_an_error(tmp_path, capsys):
    folder = write_vtab_task(tmp_path / "lists", "dtd", classes=3)  # labels 0..2
    data = {
        "class_path": "lit_multimodal.data.ListFileDataModule",
        "init_args": {
            "root": str(folder),
            "num_classes": 5,
            "train_split": "train800",
            "val_split": "val200",
            "batch_size": 2,
            "num_workers": 0,
            "img_size": 32,
        },
    }
    code, out = _exit(["fit", "--config", str(fit_config(tmp_path, data))], capsys)
    assert code == 1
    line = _one_error_line(out)
    assert "data.num_classes is 5 but the labels of" in line and "train800.txt" in line and "test.txt" in line
    assert "only reach 2 (3 classes found); set data.num_classes: 3" in line


# -- 16-bit images ----------------------------------------------------------------------------------------------------
def _grey16(path: Path) -> np.ndarray:
    """A 16 x 16 16-bit grey PNG of 4 x 4 blocks; returns its values."""
    values = np.array(
        [[0, 1, 128, 129], [257, 32767, 32896, 65534], [65535, 1000, 50000, 40000], [255, 256, 20000, 65280]],
        dtype=np.uint16,
    )
    values = np.repeat(np.repeat(values, 4, axis=0), 4, axis=1)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    return values


def _to_8_bit(values: np.ndarray) -> np.ndarray:
    """round(v / 65535 * 255), half up: the full 16-bit range onto the full 8-bit range."""
    return np.floor(values.astype(np.float64) / 65535 * 255 + 0.5).astype(np.uint8)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = _grey16(tmp_path / "grey16.png")
    rgb = np.asarray(open_rgb(tmp_path / "grey16.png"))
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], _to_8_bit(values))
    assert (rgb == 255).mean() == 2 / 16  # 65534 and 65535; PIL's own convert("RGB") makes 13 of the 16 values 255

    dataset = ImageListDataset([(tmp_path / "grey16.png", 0)], transform=np.asarray)
    np.testing.assert_array_equal(dataset[0][0][..., 0], _to_8_bit(values))


def test_16_bit_png_is_scaled_in_the_decoded_cache(tmp_path):
    values = _grey16(tmp_path / "grey16.png")
    path = build_decoded_array([(tmp_path / "grey16.png", 0)], 16, "nearest", True, tmp_path / "cache")
    array = np.load(path)  # same size: the resize keeps every pixel
    for channel in range(3):
        np.testing.assert_array_equal(array[0, ..., channel], _to_8_bit(values))


# -- decoded-image cache: skip_corrupt, file mode --------------------------------------------------------------------
@pytest.fixture
def vtab_truncated(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "vtab-1k"
    folder = write_vtab_task(root, "kitti", per_class=2, classes=4, size=24)
    bad = folder / "images" / "test" / "000003.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    return root, bad


def _vtab(root: Path, cache: Path, **kwargs) -> VTAB1kDataModule:
    return VTAB1kDataModule(
        root=str(root),
        task="kitti",
        batch_size=4,
        num_workers=0,
        img_size=16,
        decoded_cache=True,
        decoded_cache_dir=str(cache),
        **kwargs,
    )


def test_skip_corrupt_skips_with_the_decoded_cache(vtab_truncated, tmp_path, caplog):
    root, bad = vtab_truncated
    with pytest.raises(DataError, match=rf"cannot read image {bad}: .*set skip_corrupt: true"):
        _vtab(root, tmp_path / "c").setup("test")
    with caplog.at_level(logging.WARNING):
        dm = _vtab(root, tmp_path / "c", skip_corrupt=True)
        dm.setup("test")
    assert f"skipping unreadable image {bad}" in caplog.text
    dataset = dm.datasets["test"]
    assert len(dataset) == 7 and bad not in [p for p, _ in dataset.samples]
    assert [y for _, y in dataset] == [y for p, y in dm.read_split("test") if p != bad]
    assert list(read_skipped(dataset.array_path)) == [3]
    # the array built with skip_corrupt is found again; without skip_corrupt its skipped image is still an error
    with pytest.raises(DataError, match=rf"cannot read image {bad}: "):
        _vtab(root, tmp_path / "c").setup("test")


def test_fit_checks_the_test_split_before_training(vtab_truncated, tmp_path):
    root, bad = vtab_truncated
    bad.unlink()
    dm = _vtab(root, tmp_path / "c")
    with pytest.raises(DataError, match=r"split 'test': 1 listed images do not exist: .*000003\.jpg"):
        dm.setup("fit")


def test_cache_files_follow_the_umask(vtab_truncated, tmp_path):
    from lit_multimodal.vision.feature_cache import FeatureCache

    root, _ = vtab_truncated
    old = os.umask(0o022)
    try:
        dm = _vtab(root, tmp_path / "c", skip_corrupt=True)
        dm.setup("test")
        path = dm.datasets["test"].array_path
        import torch

        feature = FeatureCache(tmp_path / "f").save({"k": 1}, torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
        cache = EmbeddingCache(tmp_path / "e", {"m": 1})
        shard = cache.put({"a": torch.ones(4)})
    finally:
        os.umask(old)
    for file in (path, path.with_suffix(".skipped.json"), feature, shard):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file


# -- BCI pairs --------------------------------------------------------------------------------------------------------
def test_bci_patch_without_its_pair_is_an_error_or_left_out(tmp_path, caplog):
    root = write_bci(tmp_path / "BCI_dataset", {"train": {"0": 3, "1+": 3}, "test": {"0": 2}})
    lonely = root / "HE" / "train" / "00001_train_0.png"
    (root / "IHC" / "train" / lonely.name).unlink()
    for stain in ("HE", "IHC"):
        dm = BCIDataModule(root=str(root), stain=stain, batch_size=2, num_workers=0, img_size=16)
        with pytest.raises(DataError, match=rf"1 patches have no registered HE/IHC pair: {lonely} \(no "):
            dm.setup("fit")
    samples = {}
    for stain in ("HE", "IHC"):
        dm = BCIDataModule(root=str(root), stain=stain, batch_size=2, num_workers=0, img_size=16, skip_corrupt=True)
        with caplog.at_level(logging.WARNING):
            dm.setup("fit")
        samples[stain] = {role: sorted(p.name for p, _ in dm.datasets[role].samples) for role in ("train", "val")}
    assert f"leaving out 1 patches without a registered pair: {lonely}" in caplog.text
    assert samples["HE"] == samples["IHC"]  # same images, same carve
    assert lonely.name not in samples["HE"]["train"] + samples["HE"]["val"]
    assert len(samples["HE"]["train"]) + len(samples["HE"]["val"]) == 5


# -- prepare fgvc -----------------------------------------------------------------------------------------------------
def test_prepare_refuses_an_empty_val_json(tmp_path):
    archive = write_nabirds(tmp_path)  # 10..13 train images per class: a 1 % hold-out rounds to 0 everywhere
    with pytest.raises(DataError, match=r"val.json would be empty: .* largest class has 13; val_fraction 0.0385"):
        prepare(archive, tmp_path / "out", val_fraction=0.01)
    assert not (tmp_path / "out" / "val.json").exists()


def test_nabirds_label_error_names_file_and_line(tmp_path):
    archive = write_nabirds(tmp_path)
    labels_path = archive.src / "image_class_labels.txt"
    split = dict(line.split() for line in (archive.src / "train_test_split.txt").read_text().splitlines())
    lines = labels_path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, start=1) if split[line.split()[0]] == "0")
    lines[number - 1] = f"{lines[number - 1].split()[0]} 9999"
    labels_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=rf"classes \[9999\] have no image .*label 9999 at {labels_path} line {number} \(test image "
    ):
        prepare(archive, tmp_path / "out")


def test_flowers_label_error_names_file_and_index(tmp_path):
    import scipy.io

    archive = write_flowers(tmp_path)
    test_number = int(sorted(archive.test)[0].removeprefix("jpg/image_").removesuffix(".jpg"))
    labels = scipy.io.loadmat(archive.src / "imagelabels.mat")["labels"]
    labels[0, test_number - 1] = 99
    scipy.io.savemat(archive.src / "imagelabels.mat", {"labels": labels})
    pattern = (
        rf"classes \[99\] have no image .*label 99 at {archive.src / 'imagelabels.mat'} labels\[{test_number - 1}\]"
    )
    with pytest.raises(DataError, match=pattern):
        prepare(archive, tmp_path / "out")


# -- ImageBind and PandaGPT -------------------------------------------------------------------------------------------
def test_empty_text_is_an_error_naming_the_record(tmp_path, capsys):
    with pytest.raises(InputError, match=r"text 2 of 3 \(' '\) is empty"):
        load_text(["a dog", " ", "rain"])
    code, out = _exit(["embed", "--modality", "text", "--files", '["a dog", ""]', "--out", str(tmp_path)], capsys)
    assert code == 1 and "text 2 of 2 ('') is empty" in _one_error_line(out)
    args = ["zeroshot", "--modality", "image", "--files", str(tmp_path), "--labels", '[dog, " "]']
    code, out = _exit(args, capsys)
    assert code == 1 and "label 2 of 2 (' ') is empty" in _one_error_line(out)


def test_zeroshot_without_labels_is_one_line(tiny_dataset, capsys):
    code, out = _exit(["zeroshot", "--modality", "image", "--files", str(tiny_dataset / "images" / "001")], capsys)
    assert code == 1 and "zeroshot needs text labels" in _one_error_line(out)


def test_files_take_a_folder_or_a_glob_and_a_cut_shard_is_one_line(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for index, colour in enumerate([(200, 20, 20), (20, 20, 200), (20, 200, 20)]):
        Image.new("RGB", (32, 32), colour).save(folder / f"{index}.png")
    (folder / "notes.txt").write_text("not an image")
    tiny = ["--preset", "tiny", "--batch_size", "2"]
    out_dir = tmp_path / "cache"
    main(["embed", "--modality", "image", "--files", f"{folder}/*.png", "--out", str(out_dir), *tiny])
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["inputs"] == 3  # the glob's three matches
    shards = sorted(out_dir.glob("*/shard-*.safetensors"))
    assert len(shards) == 2  # one per batch
    (folder / "notes.txt").unlink()
    args = ["--labels", "[red, blue]", "--cache_dir", str(out_dir), "--out", str(tmp_path / "z.json"), *tiny]
    main(["zeroshot", "--modality", "image", "--files", str(folder), *args])  # a folder: every file in it
    rows = json.loads((tmp_path / "z.json").read_text())["results"]
    assert [Path(row["file"]).name for row in rows] == ["0.png", "1.png", "2.png"]
    shards[0].write_bytes(shards[0].read_bytes()[:100])
    code, out = _exit(["embed", "--modality", "image", "--files", str(folder), "--out", str(out_dir), *tiny], capsys)
    assert code == 1
    assert f"{shards[0]}: unreadable embedding-cache shard" in _one_error_line(out)


def _pandagpt_config(tmp_path: Path, **model: object) -> Path:
    config = {
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "default_root_dir": str(tmp_path / "run")},
        "model": {"class_path": "lit_multimodal.multimodal.pandagpt.module.PandaGPT", "init_args": model},
        "data": {
            "class_path": "lit_multimodal.data.instructions.InstructionDataModule",
            "init_args": {"json_path": str(tmp_path / "data.json"), "image_root": str(tmp_path)},
        },
    }
    path = tmp_path / "pandagpt.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pandagpt_missing_llm_folder_is_one_line(tmp_path, capsys):
    config = _pandagpt_config(tmp_path, llm_path=str(tmp_path / "vicuna"))
    code, out = _exit(["fit", "--config", str(config)], capsys)
    assert code == 1
    assert f"model.llm_path {tmp_path / 'vicuna'} does not exist" in _one_error_line(out)


@pytest.mark.parametrize("fault", ["width", "truncated"])
def test_pandagpt_bad_embedding_table_is_one_line(tmp_path, capsys, fault):
    import torch
    from safetensors.torch import save_file

    table = tmp_path / "embeddings.safetensors"
    save_file({"a.jpg": torch.zeros(512), "b.jpg": torch.ones(512)}, str(table))
    if fault == "truncated":
        table.write_bytes(table.read_bytes()[:-100])
    embedder = {
        "class_path": "lit_multimodal.multimodal.pandagpt.embedder.PrecomputedEmbedder",
        "init_args": {"path": str(table)},
    }
    config = _pandagpt_config(tmp_path, llm_path=str(tmp_path / "vicuna"), embedder=embedder)
    code, out = _exit(["fit", "--config", str(config)], capsys)
    assert code == 1
    expected = {
        "width": "embeddings are 512 wide but model.embed_dim is 1024",
        "truncated": "not a readable safetensors",
    }
    assert f"{table}: {expected[fault]}" in _one_error_line(out)
