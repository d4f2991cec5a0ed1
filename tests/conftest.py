"""Shared fixtures: tiny datasets written in the real on-disk layouts, an isolated framework cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ["LIT_MM_CACHE"] = str(tmp_path_factory.mktemp("lit_mm_cache"))


def write_json_split_dataset(
    root: Path,
    labels: dict[str, list[object]] | None = None,
    per_class: int = 4,
    size: int = 32,
    image_root: str = "images",
) -> Path:
    """Writes a tiny VPT json-split dataset: ``images/<label>/<i>.png`` and ``{split}.json``.

    Each class gets a distinct colour so that a model can learn it.
    """
    labels = labels or {"train": ["001", "002", "003"], "val": ["001", "002", "003"], "test": ["001", "002", "003"]}
    rng = np.random.default_rng(0)
    for split, classes in labels.items():
        mapping = {}
        for c_index, label in enumerate(classes):
            for i in range(per_class):
                rel = f"{label}/{split}_{i}.png"
                path = root / image_root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                colour = np.array([60 * (c_index + 1) % 256, 40 * c_index % 256, 200 - 50 * c_index], dtype=np.float64)
                pixels = np.clip(colour + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(path)
                mapping[rel] = label
        (root / f"{split}.json").write_text(json.dumps(mapping))
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    return write_json_split_dataset(tmp_path / "tiny")


def tiny_config(tmp_path: Path, data_root: Path, tuning: str = "vpt_deep", **model_extra) -> Path:
    """A complete fit config on ``test_vit`` at 32 px for ``data_root``."""
    import yaml

    config = {
        "seed_everything": 7,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 2,
            "default_root_dir": str(tmp_path / "run"),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
        "model": {
            "class_path": "lit_multimodal.vision.ImageClassifier",
            "init_args": {
                "tuning": tuning,
                "num_prompts": 2,
                "backbone": {"arch": "test_vit", "img_size": 32},
                "optim": {"base_lr": 1.0, "warmup_epochs": 1},
                **model_extra,
            },
        },
        "data": {
            "class_path": "lit_multimodal.data.JsonSplitDataModule",
            "init_args": {
                "root": str(data_root),
                "image_root": "images",
                "num_classes": 3,
                "batch_size": 4,
                "num_workers": 0,
                "img_size": 32,
                "train_transform": "resize",
                "eval_transform": "resize",
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
