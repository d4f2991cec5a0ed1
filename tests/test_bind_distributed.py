"""``lit-mm bind`` on several devices: gathered negatives give the one-device gradient; DeepSpeed checkpoints export.

Runs go through ``lit-mm bind`` in subprocesses (DDP relaunches the command line; DeepSpeed leaves process-global
state behind), pinned to one thread each.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lit_multimodal.multimodal.imagebind import build_imagebind
from lit_multimodal.multimodal.imagebind.bind.export import bind_export, read_bind_checkpoint
from lit_multimodal.multimodal.imagebind.config import ImageBindConfig
from tests.test_bind import FAST
from tests.test_strategies import lit_mm, model_state_files, requires_deepspeed

TRAIN, VAL = 8, 5  # 5 held-out pairs over 2 devices: the sampler repeats one to even the shards


@pytest.fixture(scope="module")
def bind_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("bind_distributed")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(TRAIN + VAL):
        pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
        np.save(root / f"depth{i}.npy", (1.0 + pixels[..., 0] / 255.0).astype(np.float32))
        rows.append({"anchor": f"img{i}.png", "other": f"depth{i}.npy", "split": "train" if i < TRAIN else "val"})
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "precision": "32-true", "max_epochs": 1, "enable_progress_bar": False},
        "model": {
            "class_path": "lit_multimodal.multimodal.imagebind.bind.BindModule",
            "init_args": {"modality": "depth", "preset": "tiny", "config": FAST, "lr": 0.01, "weight_decay": 0.0},
        },
        "data": {
            "class_path": "lit_multimodal.multimodal.imagebind.bind.BindDataModule",
            "init_args": {
                "manifest": str(root / "pairs.jsonl"),
                "modality": "depth",
                "anchor": "image",
                "preset": "tiny",
                "config": FAST,
                "batch_size": TRAIN,
                "cache_dir": str(root / "cache"),
            },
        },  # fmt: skip
    }
    path = root / "bind.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _bind(config, run, *extra):
    lit_mm("bind", "--config", str(config), "--trainer.default_root_dir", str(run), *extra)
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "success", result.get("error")
    return result


def _with_gradient_dump(config, path):
    loaded = yaml.safe_load(config.read_text())
    loaded["trainer"]["callbacks"] = [
        {"class_path": "lit_multimodal.testing.FirstStepGradients", "init_args": {"path": str(path)}}
    ]
    out = path.with_suffix(".yaml")
    out.write_text(yaml.safe_dump(loaded))
    return out


def _close(a, b):
    """Per tensor, within 0.1 % of its largest gradient (float32 sums in another order differ by ~1e-5 of it)."""
    return all(float((a[k] - b[k]).abs().max()) <= 1e-3 * float(a[k].abs().max()) for k in a)


@pytest.mark.slow
def test_ddp_with_gathered_negatives_takes_the_one_device_gradient_and_scores_the_whole_split(bind_config, tmp_path):
    runs, grads = {}, {}
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.init_args.batch_size", str(TRAIN // 2)]
    for name, extra in {
        "one": [],
        "gathered": ddp,
        "local": [*ddp, "--model.init_args.gather_negatives", "false"],
    }.items():
        config = _with_gradient_dump(bind_config, tmp_path / f"{name}_grads.pt")
        runs[name] = _bind(config, tmp_path / name, *extra)
        grads[name] = torch.load(tmp_path / f"{name}_grads.pt", weights_only=True)
    one, two = runs["one"], runs["gathered"]
    assert one["global_step"] == two["global_step"] == 1
    assert one["metrics"]["train/negatives"] == two["metrics"]["train/negatives"] == TRAIN - 1
    assert runs["local"]["metrics"]["train/negatives"] == TRAIN // 2 - 1
    # The batch of 8 is the one step of every run (in another order: the loss is a mean over the pairs). Gathered,
    # the loss and the averaged gradient are those of one device; each device on its own half, they are not.
    assert two["metrics"]["train/loss"] == pytest.approx(one["metrics"]["train/loss"], rel=1e-5)
    assert set(grads["one"]) == set(grads["gathered"]) and grads["one"]
    assert _close(grads["one"], grads["gathered"])
    assert not _close(grads["one"], grads["local"])
    # retrieval over all 5 held-out pairs, not one device's shard, and the repeated pair not counted twice
    assert two["metrics"]["val/chance_R@1"] == pytest.approx(1 / VAL)
    for name in ("val/R@1_m2a", "val/R@5_a2m", "val/R@1_a2m"):
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], abs=1e-6), name


@pytest.mark.slow
@requires_deepspeed
def test_deepspeed_zero2_bind_checkpoint_exports_to_a_strictly_loadable_imagebind(bind_config, tmp_path):
    run = tmp_path / "zero2"
    _bind(bind_config, run, "--trainer.strategy", "lit_multimodal.testing.CPUDeepSpeedStrategy",
          "--trainer.strategy.stage", "2")  # fmt: skip
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.is_dir()
    (states_file,) = model_state_files(checkpoint)
    assert torch.load(states_file, map_location="cpu", weights_only=True)["trainable_only"] is True
    state, hparams = read_bind_checkpoint(checkpoint)
    assert hparams["modality"] == "depth" and state
    assert all(".depth" in key for key in state)  # the trainable tensors of the bound encoder only
    summary = bind_export(str(checkpoint), str(tmp_path / "bound.pth"))
    assert summary["bound_modality"] == "depth" and summary["changed_tensors"] > 0
    build_imagebind(ImageBindConfig.tiny(**FAST), tmp_path / "bound.pth")  # strict load


def test_module_checkpoints_read_from_a_file_a_deepspeed_folder_or_a_plain_dict(tmp_path):
    from lit_multimodal.multimodal.imagebind.checkpoint import ImageBindCheckpointError
    from lit_multimodal.training.checkpointing import CheckpointFileError, read_module_checkpoint

    weight = torch.arange(6.0).reshape(2, 3)
    hparams = {"modality": "depth", "tuning": "full"}
    torch.save({"state_dict": {"head.weight": weight}, "hyper_parameters": hparams}, tmp_path / "last.ckpt")
    # Lightning's DeepSpeed layout: <ckpt>/checkpoint/mp_rank_00_model_states.pt, names under the wrapper's prefix
    (tmp_path / "ds.ckpt" / "checkpoint").mkdir(parents=True)
    torch.save({"module": {"_forward_module.head.weight": weight}, "hyper_parameters": hparams},
               tmp_path / "ds.ckpt" / "checkpoint" / "mp_rank_00_model_states.pt")  # fmt: skip
    torch.save({"module.head.weight": weight}, tmp_path / "delta.pt")
    for name, expected in {"last.ckpt": hparams, "ds.ckpt": hparams, "delta.pt": {}}.items():
        state, found = read_module_checkpoint(tmp_path / name)
        assert list(state) == ["head.weight"] and torch.equal(state["head.weight"], weight) and found == expected

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointFileError, match="empty: a folder without a DeepSpeed"):
        read_module_checkpoint(tmp_path / "empty")
    torch.save(weight, tmp_path / "tensor.pt")
    with pytest.raises(CheckpointFileError, match="tensor.pt: expected a dict of tensors.*found a Tensor"):
        read_module_checkpoint(tmp_path / "tensor.pt")
    with pytest.raises(ImageBindCheckpointError, match="delta.pt: not a Lightning checkpoint of lit-mm bind"):
        read_bind_checkpoint(tmp_path / "delta.pt")
    with pytest.raises(ImageBindCheckpointError, match="missing.ckpt: bind checkpoint not found"):
        read_bind_checkpoint(tmp_path / "missing.ckpt")
