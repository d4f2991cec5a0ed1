"""VTAB decoded-image cache: same tensors as the JPEG path (exact, or within the uint8 rounding), invalidation."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image

from lit_multimodal.data import VTAB1kDataModule
from lit_multimodal.data.image_cache import DecodedImageDataset
from lit_multimodal.data.transforms import IMAGENET_STD
from lit_multimodal.vision.backbones import BackboneConfig
from lit_multimodal.vision.module import ImageClassifier
from tests.test_vtab import write_vtab_task


def _module(root, cache, **kwargs) -> VTAB1kDataModule:
    args = dict(root=str(root), task="kitti", batch_size=4, num_workers=0, img_size=24, decoded_cache_dir=str(cache))
    args.update(kwargs)
    return VTAB1kDataModule(**args)


def _tensors(dm: VTAB1kDataModule, role: str = "test") -> torch.Tensor:
    dm.setup("test" if role == "test" else "fit")
    return torch.stack([x for x, _ in dm.datasets[role]])


@pytest.fixture
def vtab_root(tmp_path):
    root = tmp_path / "vtab-1k"
    write_vtab_task(root, "kitti", per_class=2, classes=4, size=37)
    return root


def test_pil_resize_is_cached_exactly(vtab_root, tmp_path):
    kwargs = dict(interpolation="bicubic", antialias=True)
    cached = _module(vtab_root, tmp_path / "c", decoded_cache=True, **kwargs)
    plain = _module(vtab_root, tmp_path / "c", **kwargs)
    assert torch.equal(_tensors(cached), _tensors(plain))
    assert isinstance(cached.datasets["test"], DecodedImageDataset)
    labels = [y for _, y in cached.datasets["test"]]
    assert labels == [y for _, y in plain.datasets["test"]]


def test_tf_float_resize_is_within_the_uint8_rounding(vtab_root, tmp_path):
    cached = _tensors(_module(vtab_root, tmp_path / "c", decoded_cache=True))
    plain = _tensors(_module(vtab_root, tmp_path / "c"))
    # Rounding the resized [0, 1] pixel to 1/255 steps moves it by at most 0.5/255 before the normalisation.
    bound = 0.5 / 255 / min(IMAGENET_STD) + 1e-6
    assert (cached - plain).abs().max() <= bound
    assert (cached - plain).abs().max() > 0  # it is really the cached path


def test_the_array_is_built_once_and_rebuilt_on_any_change(vtab_root, tmp_path):
    cache = tmp_path / "c"
    _tensors(_module(vtab_root, cache, decoded_cache=True))
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    array = np.load(files[0], mmap_mode="r")
    assert array.dtype == np.uint8 and array.shape == (8, 24, 24, 3)

    _tensors(_module(vtab_root, cache, decoded_cache=True))  # another run: reads the same file
    assert sorted(cache.glob("*.npy")) == files and files[0].stat().st_mtime_ns == stamp

    _tensors(_module(vtab_root, cache, decoded_cache=True, img_size=16))
    _tensors(_module(vtab_root, cache, decoded_cache=True, interpolation="bicubic"))
    _tensors(_module(vtab_root, cache, decoded_cache=True, antialias=True))
    assert len(list(cache.glob("*.npy"))) == 4
    image = vtab_root / "kitti" / "images" / "test" / "000000.jpg"
    Image.fromarray(np.zeros((37, 37, 3), dtype=np.uint8)).save(image)
    os.utime(image, ns=(1, 1))
    rebuilt = _tensors(_module(vtab_root, cache, decoded_cache=True))
    assert len(list(cache.glob("*.npy"))) == 5
    assert torch.allclose(rebuilt[0], _tensors(_module(vtab_root, cache))[0], atol=0.5 / 255 / min(IMAGENET_STD) + 1e-6)


def test_training_reads_the_cache_with_loader_workers(vtab_root, tmp_path):
    dm = _module(vtab_root, tmp_path / "c", decoded_cache=True, num_workers=2, img_size=32, stage="search")
    model = ImageClassifier(num_classes=4, backbone=BackboneConfig(arch="test_vit", img_size=32), num_prompts=2)
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert isinstance(dm.datasets["train"], DecodedImageDataset)
    assert trainer.global_step == 2
