"""ImageClassifier under DDP and DeepSpeed ZeRO-2/3 on CPU: parameter counts and trainable-only checkpoints.

Training runs go through ``lit-mm fit`` in subprocesses (multi-process strategies relaunch the command line,
and DeepSpeed leaves process-global state behind). DeepSpeed runs use
:class:`lit_multimodal.testing.CPUDeepSpeedStrategy`; the first DeepSpeed run on a machine JIT-compiles
DeepSpeed's CPU communication op (about 30 s with ninja and g++), later runs reuse the cached build.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from PIL import Image

from lit_multimodal.data import JsonSplitDataModule
from lit_multimodal.vision import BackboneConfig, ImageClassifier, build_vit, count_parameters

SEED = 0
NUM_CLASSES = 2
BATCH = 2
SPLIT_SIZES = {"train": 8, "val": 4, "test": 4}
BACKBONE = {"arch": "test_vit", "img_size": 32}
MODEL_ARGS = {
    "tuning": "vpt_deep",
    "num_prompts": 2,
    # A constant lr without warmup, so one epoch moves the trainable tensors away from their init.
    "optim": {"base_lr": 0.5, "scale_lr": False, "warmup_epochs": 0, "schedule": "constant"},
}
# DeepSpeed keeps every tensor below this size whole on every rank (default 1e5: all of test_vit); 0
# makes ZeRO-3 really partition this small model.
ZERO3_CONFIG = {
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "zero_allow_untested_optimizer": True,
}
RUN_TIMEOUT_S = 300

requires_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed is not installed (pip install -e '.[deepspeed]')",
)


# -- fixture: a tiny json-split dataset, backbone weights and a base config ----------------------
@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Writes ``data/{train,val,test}.json`` with 32x32 PNGs, ``backbone.pth`` and ``base.yaml``."""
    root = tmp_path_factory.mktemp("strategies")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    generator = torch.Generator().manual_seed(SEED)
    for split, size in SPLIT_SIZES.items():
        mapping = {}
        for index in range(size):
            rel = f"{split}_{index}.png"
            pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(data / "images" / rel)
            mapping[rel] = f"class_{index % NUM_CLASSES}"
        (data / f"{split}.json").write_text(json.dumps(mapping))
    torch.manual_seed(SEED + 1)
    torch.save(build_vit(BackboneConfig(**BACKBONE)).state_dict(), root / "backbone.pth")
    config = {
        "seed_everything": SEED,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "precision": "32-true",
            "limit_train_batches": 2,
            "limit_val_batches": 1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "model": {
            "class_path": "lit_multimodal.vision.ImageClassifier",
            "init_args": {**MODEL_ARGS, "backbone": {**BACKBONE, "checkpoint": str(root / "backbone.pth")}},
        },
        "data": {"class_path": "lit_multimodal.data.JsonSplitDataModule", "init_args": data_args(data)},
    }
    (root / "base.yaml").write_text(yaml.safe_dump(config))
    return root


def data_args(data: Path) -> dict[str, Any]:
    return {
        "root": str(data),
        "num_classes": NUM_CLASSES,
        "image_root": "images",
        "img_size": 32,
        "batch_size": BATCH,
        "num_workers": 0,
        "train_transform": "resize",
        "eval_transform": "resize",
    }


def reference_model(setup_dir: Path) -> ImageClassifier:
    """The model of ``base.yaml`` built in this process, seeded as the CLI seeds it: never partitioned."""
    pl.seed_everything(SEED, verbose=False)
    backbone = {**BACKBONE, "checkpoint": str(setup_dir / "backbone.pth")}
    return ImageClassifier(num_classes=NUM_CLASSES, backbone=backbone, **MODEL_ARGS)


def lit_mm(*args: str) -> subprocess.CompletedProcess:
    """Runs ``lit-mm`` with this interpreter's environment; fails the test with the output's tail."""
    script = Path(sys.executable).with_name("lit-mm")
    command = [str(script)] if script.exists() else [shutil.which("lit-mm") or "lit-mm"]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")
    }
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    result = subprocess.run(
        command + list(args), env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-6000:]
        pytest.fail(f"lit-mm {args[0]} exited {result.returncode}:\n{tail}")
    return result


def fit(config_file: Path, run_dir: Path, *extra: str) -> dict[str, Any]:
    """``lit-mm fit`` into ``run_dir``; returns its ``result.json`` after checking that the run succeeded."""
    lit_mm("fit", "--config", str(config_file), "--trainer.default_root_dir", str(run_dir), *extra)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "success", result.get("error")
    return result


def assert_counts_match(result: dict[str, Any], model: ImageClassifier) -> None:
    expected = count_parameters(model.net)
    assert result["params"] == {
        "total": expected.total,
        "trainable": expected.trainable,
        "backbone": expected.backbone,
        "tuned_percent": expected.tuned_percent,
        "tuned_percent_of_backbone": expected.tuned_percent_of_backbone,
    }
    assert result["hparams"]["tuned_percent"] == round(expected.tuned_percent, 6)


def trainable_shapes(model: ImageClassifier) -> dict[str, tuple[int, ...]]:
    return {name: tuple(model.state_dict()[name].shape) for name in model.trainable_state_keys()}


def assert_trained(state: dict[str, torch.Tensor], model: ImageClassifier) -> None:
    """The saved trainable tensors are not the initial ones: the checkpoint holds trained weights."""
    initial = model.state_dict()
    assert any(not torch.allclose(state[name].float(), initial[name]) for name in state)


def model_state_files(checkpoint_dir: Path) -> list[Path]:
    assert checkpoint_dir.is_dir(), f"a DeepSpeed checkpoint is a directory; got {checkpoint_dir}"
    files = sorted(checkpoint_dir.glob("checkpoint/*model_states.pt"))
    assert files, f"no DeepSpeed model-states file under {checkpoint_dir}"
    return files


def zero_fp32_state(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir))


def logged_test_metrics(log_dir: Path) -> dict[str, float]:
    """The ``test/*`` values a CSVLogger wrote under ``log_dir``."""
    (metrics_file,) = log_dir.rglob("metrics.csv")
    with metrics_file.open() as handle:
        rows = list(csv.DictReader(handle))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith("test/") and v}


def assert_same_test_metrics(restored: dict[str, float], result: dict[str, Any]) -> None:
    after_fit = {k: v for k, v in result["metrics"].items() if k.startswith("test/")}
    # A logger also receives per-class accuracies as scalars; result.json keeps them under test_details.
    per_class = {k: v for k, v in restored.items() if k.startswith("test/per_class/")}
    assert not per_class or len(per_class) == len(result["test_details"]["classes"])
    restored = {k: v for k, v in restored.items() if k not in per_class}
    assert set(restored) == set(after_fit) and after_fit
    for name, value in after_fit.items():
        assert restored[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


# -- DDP -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_cpu_processes(setup_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    result = fit(setup_dir / "base.yaml", run_dir, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    reference = reference_model(setup_dir)

    assert result["hparams"]["global_batch"] == 2 * BATCH  # both processes took part
    assert_counts_match(result, reference)
    assert {"test/top1", "test/loss"} <= set(result["metrics"])

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["trainable_only"] is True
    state = checkpoint["state_dict"]
    assert {k: tuple(v.shape) for k, v in state.items()} == trainable_shapes(reference)
    assert sum(v.numel() for v in state.values()) == result["params"]["trainable"]
    assert_trained(state, reference)


# -- DeepSpeed ZeRO-2 ------------------------------------------------------------------------------
@pytest.mark.slow
@requires_deepspeed
def test_deepspeed_zero2_trainable_only_checkpoint_restores(setup_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "zero2"
    # The stock exclude_frozen_parameters=False is kept: the module must turn it on by itself.
    strategy = [
        "--trainer.strategy",
        "lit_multimodal.testing.CPUDeepSpeedStrategy",
        "--trainer.strategy.stage",
        "2",
    ]
    result = fit(setup_dir / "base.yaml", run_dir, *strategy)
    reference = reference_model(setup_dir)
    assert_counts_match(result, reference)

    checkpoint_dir = run_dir / "checkpoints" / "last.ckpt"
    (states_file,) = model_state_files(checkpoint_dir)
    states = torch.load(states_file, map_location="cpu", weights_only=True)
    assert states["trainable_only"] is True
    assert states["frozen_param_fragments"] is None
    assert {k: tuple(v.shape) for k, v in states["module"].items()} == trainable_shapes(reference)
    fp32 = zero_fp32_state(checkpoint_dir)
    assert {k: tuple(v.shape) for k, v in fp32.items()} == trainable_shapes(reference)
    assert_trained(fp32, reference)

    # DeepSpeed probes the train loader during `test` to pick its logging batch size;
    # the data module builds that split on demand.
    log_dir = tmp_path / "zero2_test_logs"
    lit_mm(
        "test",
        "--config", str(setup_dir / "base.yaml"),
        *strategy,
        "--trainer.default_root_dir", str(tmp_path / "zero2_test"),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(log_dir),
        "--ckpt_path", str(checkpoint_dir),
    )  # fmt: skip
    assert_same_test_metrics(logged_test_metrics(log_dir), result)


# -- DeepSpeed ZeRO-3, two processes ---------------------------------------------------------------
@pytest.mark.slow
@requires_deepspeed
def test_deepspeed_zero3_two_processes_partitioned_counts_and_checkpoint(setup_dir: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((setup_dir / "base.yaml").read_text())
    config["trainer"]["devices"] = 2
    config["trainer"]["strategy"] = {
        "class_path": "lit_multimodal.testing.CPUDeepSpeedStrategy",
        "init_args": {"config": ZERO3_CONFIG},
    }
    config_file = tmp_path / "zero3.yaml"
    config_file.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "zero3"
    result = fit(config_file, run_dir)
    reference = reference_model(setup_dir)
    assert result["hparams"]["global_batch"] == 2 * BATCH
    assert_counts_match(result, reference)

    checkpoint_dir = run_dir / "checkpoints" / "last.ckpt"
    files = model_state_files(checkpoint_dir)
    assert len(files) == 2  # one shard per rank
    expected = trainable_shapes(reference)
    for states_file in files:
        states = torch.load(states_file, map_location="cpu", weights_only=True)
        assert states["trainable_only"] is True
        assert states["frozen_param_fragments"] is None
        # Placeholders of partitioned tensors: counting numel() here would have given 0 parameters.
        assert set(states["module"]) == set(expected)
        assert all(tensor.numel() == 0 for tensor in states["module"].values())
    fp32 = zero_fp32_state(checkpoint_dir)
    assert {k: tuple(v.shape) for k, v in fp32.items()} == expected
    assert_trained(fp32, reference)

    # Consolidate into one trainable-only file and evaluate it without DeepSpeed.
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    single = tmp_path / "zero3_single.ckpt"
    convert_zero_checkpoint_to_fp32_state_dict(checkpoint_dir, single)
    converted = torch.load(single, map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in converted["state_dict"].items()} == expected

    model = reference_model(setup_dir)
    datamodule = JsonSplitDataModule(**data_args(setup_dir / "data"))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path / "zero3_test",
    )
    (restored,) = trainer.test(model, datamodule=datamodule, ckpt_path=str(single), verbose=False)
    assert_same_test_metrics(restored, result)
    for name, tensor in fp32.items():
        torch.testing.assert_close(model.state_dict()[name], tensor)
