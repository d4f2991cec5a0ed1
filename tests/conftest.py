"""Shared fixtures: tiny datasets written in the real on-disk layouts, an isolated framework cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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


def fit_config(tmp_path: Path, data: dict, tuning: str = "vpt_deep", max_epochs: int = 2, **model_extra) -> Path:
    """A complete fit config on ``test_vit`` at 32 px with the given ``data`` section, written to a file."""
    import yaml

    config = {
        "seed_everything": 7,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": max_epochs,
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
        "data": data,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def tiny_config(tmp_path: Path, data_root: Path, tuning: str = "vpt_deep", **model_extra) -> Path:
    """A fit config for a json-split fixture written by :func:`write_json_split_dataset`."""
    data = {
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
    }
    return fit_config(tmp_path, data, tuning, **model_extra)


def vtab_config(tmp_path: Path, vtab_root: Path, max_epochs: int = 1) -> Path:
    """A fit config for VTAB-1k fixture tasks under ``vtab_root`` (the task is chosen with ``--data.task``)."""
    data = {
        "class_path": "lit_multimodal.data.VTAB1kDataModule",
        "init_args": {"root": str(vtab_root), "batch_size": 4, "num_workers": 0, "img_size": 32},
    }
    return fit_config(tmp_path, data, max_epochs=max_epochs)


SLURM_PARTITION = "debug"


def _slurm_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def _no_cluster(reason: str) -> None:
    """Skips, or fails where the cluster is required (``.ci/run`` brings one up and sets LIT_MM_REQUIRE_SLURM)."""
    if os.environ.get("LIT_MM_REQUIRE_SLURM") == "1":
        pytest.fail(f"LIT_MM_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A reachable SLURM controller with a ``debug`` partition (experiments/slurm/cluster_up.sh starts one)."""
    if shutil.which("sinfo") is None:
        _no_cluster("no SLURM cluster reachable: sinfo not found")
    # sinfo retries for about 9 s when no controller listens; scontrol ping tells at once.
    if shutil.which("scontrol") is not None:
        ping = _slurm_cmd("scontrol", "ping")
        if "is UP" not in ping.stdout:
            reason = " ".join(ping.stdout.split("\n", 1)[0].split()) or ping.stderr.strip()
            _no_cluster(f"no SLURM cluster reachable: {reason} (scontrol ping)")
    try:
        proc = _slurm_cmd("sinfo", "-h", "-o", "%R")
    except subprocess.TimeoutExpired:
        _no_cluster("no SLURM cluster reachable: sinfo timed out")
    if proc.returncode != 0:
        _no_cluster(f"no SLURM cluster reachable: {proc.stderr.strip() or f'sinfo exited {proc.returncode}'}")
    if SLURM_PARTITION not in proc.stdout.split():
        _no_cluster(f"SLURM cluster has no partition {SLURM_PARTITION!r} (partitions: {proc.stdout.split()})")
