"""``lit-mm fit`` then ``lit-mm test --ckpt_path`` on a tiny dataset, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from .conftest import tiny_config


def _lit_mm(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lit_multimodal", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_fit_then_test_from_checkpoint(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    fit = _lit_mm("fit", "--config", str(config), cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = tmp_path / "run"

    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "success"
    assert result["params"]["trainable"] == 2 * 6 * 64 + 65 * 3  # p * depth * width + head
    assert result["params"]["tuned_percent"] == 100 * result["params"]["trainable"] / result["params"]["total"]
    assert 0.0 <= result["metrics"]["test/top1"] <= 1.0 and "val/top1" in result["metrics"]
    assert result["hparams"]["lr"] == 1.0 * 4 / 256  # base_lr x batch / 256
    assert len(result["config_hash"]) == 16 and result["wall_time_s"] > 0 and result["seed"] == 7
    assert (run / "config.yaml").is_file()
    assert result["data"]["class_path"] == "lit_multimodal.data.JsonSplitDataModule"
    assert result["data"]["init_args"]["interpolation"] == "bilinear"  # preprocessing is on record
    assert "learning rate 0.015625 = base_lr 1 x global batch 4 / 256" in fit.stdout + fit.stderr

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert set(ckpt["state_dict"]) == {
        "net.prompts.prompt_embeddings",
        "net.prompts.deep_prompt_embeddings",
        "net.head.weight",
        "net.head.bias",
    }

    events = EventAccumulator(str(run)).Reload()
    assert "val/top1" in events.Tags()["scalars"] and "train/loss_epoch" in events.Tags()["scalars"]
    assert "test/macro_acc" in events.Tags()["scalars"] and "test/confusion_matrix" in events.Tags()["images"]
    hparams_file = run / "hparams.yaml"
    assert hparams_file.is_file()
    # The HParams tab: one flat summary, declared once, with accuracy as metrics.
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert {"tuning", "num_prompts", "lr", "weight_decay", "seed", "task", "tuned_percent"} <= set(start.hparams)
    assert start.hparams["tuned_percent_of_backbone"].number_value > start.hparams["tuned_percent"].number_value
    assert start.hparams["seed"].number_value == 7 and start.hparams["tuning"].string_value == "vpt_deep"
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/top1", "test/top1"}

    test = _lit_mm(
        "test",
        "--config",
        str(run / "config.yaml"),
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        "--trainer.default_root_dir",
        str(tmp_path / "test_run"),
        cwd=tmp_path,
    )
    assert test.returncode == 0, test.stderr[-3000:]
    evaluated = json.loads((tmp_path / "test_run" / "test_result.json").read_text())
    assert evaluated["ckpt_path"].endswith("last.ckpt")
    # The restored prompts + head reproduce the fit run's final test accuracy and loss.
    assert evaluated["metrics"]["test/top1"] == result["metrics"]["test/top1"]
    assert abs(evaluated["metrics"]["test/loss"] - result["metrics"]["test/loss"]) < 1e-5


def test_seed_fixes_init_and_data_order(tmp_path, tiny_dataset):
    results = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        config = tiny_config(workdir, tiny_dataset)
        proc = _lit_mm(
            "fit", "--config", str(config), "--trainer.max_epochs", "1", "--test_after_fit", "false", cwd=workdir
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.loads((workdir / "run" / "result.json").read_text())["metrics"])
    assert results[0]["val/loss"] == results[1]["val/loss"]
    assert "test/top1" not in results[0]
