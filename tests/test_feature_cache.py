"""Linear-probe feature cache: cached runs equal uncached ones, every key part invalidates, files are shared."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from PIL import Image

from lit_multimodal.data import JsonSplitDataModule, VTAB1kDataModule
from lit_multimodal.vision.backbones import BackboneConfig
from lit_multimodal.vision.feature_cache import FeatureCache, FeatureDataset, key_digest, state_dict_digest
from lit_multimodal.vision.module import ImageClassifier
from tests.test_vtab import write_vtab_task

BACKBONE = BackboneConfig(arch="test_vit", img_size=32)


def _data(root: Path, **kwargs) -> JsonSplitDataModule:
    args = dict(root=str(root), image_root="images", num_classes=3, batch_size=4, num_workers=0, img_size=32)
    args.update(train_transform="resize", eval_transform="resize")
    args.update(kwargs)
    return JsonSplitDataModule(**args)


def _fit(root: Path, cache_dir: Path | None, seed: int = 7, epochs: int = 3, **data_kwargs):
    seed_everything(seed)
    model = ImageClassifier(
        num_classes=3,
        backbone=BACKBONE,
        tuning="linear",
        feature_cache=cache_dir is not None,
        feature_cache_dir=str(cache_dir) if cache_dir else None,
    )
    data = _data(root, **data_kwargs)
    trainer = Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    test = trainer.test(model, datamodule=data, verbose=False)[0]
    return model, data, metrics, test


def test_cached_linear_probe_equals_the_uncached_one(tiny_dataset, tmp_path):
    cache = tmp_path / "features"
    plain_model, plain_data, plain_metrics, plain_test = _fit(tiny_dataset, None)
    assert not any(isinstance(d, FeatureDataset) for d in plain_data.datasets.values())

    first_model, first_data, first_metrics, first_test = _fit(tiny_dataset, cache)
    assert all(isinstance(first_data.datasets[r], FeatureDataset) for r in ("train", "val", "test"))
    files = sorted(cache.glob("*.safetensors"))
    assert len(files) == 3  # train, val, test
    stamps = {f: f.stat().st_mtime_ns for f in files}

    # A second run of the sweep (another seed) reads the same files and writes none.
    second_model, _, second_metrics, second_test = _fit(tiny_dataset, cache)
    assert sorted(cache.glob("*.safetensors")) == files
    assert {f: f.stat().st_mtime_ns for f in files} == stamps

    # Equal within float rounding: the cached features come from the same frozen backbone in eval mode, but the
    # backbone GEMMs see different batch compositions (sorted vs shuffled batches), which may change the last bit.
    for model in (first_model, second_model):
        for name in ("weight", "bias"):
            torch.testing.assert_close(
                getattr(model.net.head, name), getattr(plain_model.net.head, name), rtol=1e-5, atol=1e-6
            )
    for metrics in (first_metrics, second_metrics):
        assert metrics.keys() == plain_metrics.keys()
        for key, value in plain_metrics.items():
            assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for test in (first_test, second_test):
        assert test == pytest.approx(plain_test, rel=1e-5, abs=1e-6)


def test_cached_features_are_the_backbone_features(tiny_dataset, tmp_path):
    _, data, _, _ = _fit(tiny_dataset, tmp_path / "features", epochs=1)
    # seed_everything(7) before building, as in _fit, so the random backbone is the same one.
    seed_everything(7)
    model = ImageClassifier(num_classes=3, backbone=BACKBONE, tuning="linear", feature_cache=False).eval()
    images = _data(tiny_dataset)
    images.setup("fit")
    expected = torch.stack([model.net.forward_features(x[None])[0] for x, _ in images.datasets["val"]])
    cached = data.datasets["val"].features
    torch.testing.assert_close(cached, expected.detach(), rtol=1e-5, atol=1e-6)
    assert cached.grad_fn is None and not cached.requires_grad


def test_random_train_augmentation_is_not_cached(tiny_dataset, tmp_path):
    data_kwargs = dict(train_transform="fgvc", eval_transform="center_crop", resize_size=36)
    _, data, _, _ = _fit(tiny_dataset, tmp_path / "features", epochs=1, **data_kwargs)
    assert not isinstance(data.datasets["train"], FeatureDataset)  # random crop + flip: images every epoch
    assert isinstance(data.datasets["val"], FeatureDataset) and isinstance(data.datasets["test"], FeatureDataset)


class _Keys:
    """Builds real cache keys (model.feature_key) without a Trainer: only ``trainer.precision`` is read."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key(self, seed: int = 0, precision: str = "32-true", role: str = "val", checkpoint=None, **data_kwargs):
        torch.manual_seed(seed)
        backbone = BackboneConfig(arch="test_vit", img_size=32, checkpoint=checkpoint)
        model = ImageClassifier(num_classes=3, backbone=backbone, tuning="linear")
        model.trainer = SimpleNamespace(precision=precision)
        data = _data(self.root, **data_kwargs)
        return key_digest(model.feature_key(data, role))


def test_every_key_part_invalidates(tiny_dataset, tmp_path):
    keys = _Keys(tiny_dataset)
    base = keys.key()
    assert keys.key() == base  # deterministic
    changed = {
        "backbone weights (seed)": keys.key(seed=1),
        "precision": keys.key(precision="bf16-mixed"),
        "split": keys.key(role="test"),
        "transform: interpolation": keys.key(interpolation="bicubic"),
        "transform: normalisation": keys.key(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        "transform: mode": keys.key(eval_transform="center_crop", resize_size=40),
    }
    for what, key in changed.items():
        assert key != base, what
    assert len(set(changed.values())) == len(changed)

    # The data: rewriting one image, relabelling it, or removing it.
    image = next((tiny_dataset / "images" / "001").glob("val_*.png"))
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(image)
    os.utime(image, ns=(1, 1))  # a new mtime even on coarse file-system clocks
    rewritten = keys.key()
    assert rewritten != base
    split = tiny_dataset / "val.json"
    name = str(image.relative_to(tiny_dataset / "images"))
    split.write_text(split.read_text().replace(f'"{name}": "001"', f'"{name}": "002"'))
    assert keys.key() not in (base, rewritten)


def test_checkpoint_change_invalidates(tiny_dataset, tmp_path):
    torch.manual_seed(3)
    model = ImageClassifier(num_classes=3, backbone=BACKBONE, tuning="linear")
    weights = model.net.backbone.state_dict()
    path = tmp_path / "vit.pth"
    torch.save(weights, path)
    keys = _Keys(tiny_dataset)
    first = keys.key(checkpoint=str(path))
    assert keys.key(seed=99, checkpoint=str(path)) == first  # the checkpoint, not the seed, decides the weights
    weights["blocks.0.attn.qkv.weight"] = weights["blocks.0.attn.qkv.weight"] + 1e-3
    torch.save(weights, path)
    assert keys.key(checkpoint=str(path)) != first


def test_cache_rejects_a_file_written_for_another_key(tmp_path):
    cache = FeatureCache(tmp_path)
    key = {"a": 1}
    cache.save(key, torch.ones(2, 3), torch.tensor([0, 1]))
    (features, labels), hit = cache.get_or_compute(key, lambda: pytest.fail("should be cached"))
    assert hit and torch.equal(features, torch.ones(2, 3)) and labels.tolist() == [0, 1]
    other = {"a": 2}
    cache.path(key).replace(cache.path(other))  # simulate a collision / stale file under the other's name
    (features, _), hit = cache.get_or_compute(other, lambda: (torch.zeros(1, 3), torch.tensor([2])))
    assert not hit and torch.equal(features, torch.zeros(1, 3))


def test_state_dict_digest_sees_every_tensor():
    layer = torch.nn.Linear(3, 2)
    before = state_dict_digest(layer)
    with torch.no_grad():
        layer.bias[1] += 1e-7
    assert state_dict_digest(layer) != before


def test_vtab_linear_caches_every_split(tmp_path):
    root = tmp_path / "vtab-1k"
    write_vtab_task(root, "kitti", per_class=2, classes=4, size=20)
    seed_everything(0)
    model = ImageClassifier(
        num_classes=4, backbone=BACKBONE, tuning="linear", feature_cache_dir=str(tmp_path / "features")
    )
    data = VTAB1kDataModule(root=str(root), task="kitti", stage="search", batch_size=4, num_workers=0, img_size=32)
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert isinstance(data.datasets["train"], FeatureDataset) and isinstance(data.datasets["val"], FeatureDataset)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 2
