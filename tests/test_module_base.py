"""The shared module shell: one parameter count for every module, the run's hparams, lr logging, DeepSpeed switch."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from lit_multimodal.training.module_base import LitMMModule
from lit_multimodal.training.param_counts import ParamCounts, count_named_parameters


def test_counts_by_hand_and_under_zero3_partitioning():
    backbone = nn.Linear(10, 3)  # 33, frozen
    backbone.requires_grad_(False)
    prompts = nn.Parameter(torch.zeros(4, 10))  # 40, trainable, added
    head = nn.Linear(10, 2)  # 22, trainable, neither backbone nor added
    named = [
        *backbone.named_parameters("backbone"),
        ("backbone.prompts", prompts),  # added although it lives under backbone.
        *head.named_parameters("head"),
    ]

    def count() -> ParamCounts:
        return count_named_parameters(
            named, is_backbone=lambda n: n.startswith("backbone."), is_added=lambda n: n.endswith("prompts")
        )

    expected = ParamCounts(total=33 + 40 + 22, trainable=40 + 22, backbone=33, added=40)
    assert count() == expected
    assert expected.tuned_percent == pytest.approx(100 * 62 / 95)
    assert expected.tuned_percent_of_backbone == pytest.approx(100 * 62 / 33)
    for _, param in named:  # what ZeRO-3 leaves on a rank: empty tensors with their size in ds_numel
        param.ds_numel = param.numel()
        param.data = torch.empty(0)
    assert count() == expected


def test_four_bit_weights_count_in_their_original_shape():
    # bitsandbytes' Params4bit (QLoRA) stores a (32, 64) weight as 1024 packed bytes of shape (1024, 1) and keeps
    # the original shape in quant_state.shape; written here in that layout, without bitsandbytes.
    packed = nn.Parameter(torch.zeros(1024, 1, dtype=torch.uint8), requires_grad=False)
    packed.quant_state = SimpleNamespace(shape=torch.Size([32, 64]))
    lora = nn.Parameter(torch.zeros(4, 64))
    counts = count_named_parameters([("llm.q_proj.weight", packed), ("llm.q_proj.lora_A", lora)])
    assert counts == ParamCounts(total=32 * 64 + 256, trainable=256, backbone=32 * 64 + 256)


class Tiny(LitMMModule):
    """A frozen linear backbone with an added adapter; lr halves every step."""

    hparam_metrics = ("train/loss",)
    lr_log_interval = "step"

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.backbone.requires_grad_(False)
        self.adapter = nn.Linear(4, 4, bias=False)

    def is_added_parameter(self, name: str) -> bool:
        return name.startswith("adapter.")

    def run_hparams(self) -> dict:
        return {"method": "tiny", "lr": 0.1}

    def training_step(self, batch, batch_idx):
        loss = self.adapter(self.backbone(batch[0])).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.adapter.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_fit_start_counts_logs_the_run_hparams_and_the_lr_of_every_step(tmp_path, monkeypatch):
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger

    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    model = Tiny()
    assert model.param_counts is None
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(6, 4)), batch_size=2)
    trainer = Trainer(max_steps=3, accelerator="cpu", logger=CSVLogger(tmp_path, name="", version=""),
                      log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)  # fmt: skip
    trainer.fit(model, train_dataloaders=loader)

    assert model.param_counts == ParamCounts(total=20 + 16, trainable=16, backbone=20, added=16)
    expected = {
        "method": "tiny",
        "lr": 0.1,
        "task": "unknown",
        "seed": 7,
        "global_batch": 0,  # no data module tells the batch size
        "trainable_params": 16,
        "total_params": 36,
        "tuned_percent": round(100 * 16 / 36, 6),
        "tuned_percent_of_backbone": round(100 * 16 / 20, 6),
    }
    assert model.curated_hparams() == expected
    assert yaml.safe_load((Path(tmp_path) / "hparams.yaml").read_text()) == expected
    with open(Path(tmp_path) / "metrics.csv") as f:
        lrs = [float(row["train/lr"]) for row in csv.DictReader(f) if row.get("train/lr")]
    # Logged after each optimizer step, when the scheduler has already stepped: 0.1 * 0.5 ** (step + 1).
    assert lrs == pytest.approx([0.05, 0.025, 0.0125])


def test_only_the_metrics_of_existing_splits_are_declared():
    model = Tiny()
    model.hparam_metrics = ("train/loss", "val/loss", "test/top1")
    model.trainer = SimpleNamespace(datamodule=SimpleNamespace(has_split=lambda role: role in ("train", "val")))
    assert model.declared_metrics() == {"train/loss": 0.0, "val/loss": 0.0}
    model.trainer = SimpleNamespace(datamodule=None)  # nothing tells the splits: every metric is declared
    assert model.declared_metrics() == {"train/loss": 0.0, "val/loss": 0.0, "test/top1": 0.0}


def test_deepspeed_gets_exclude_frozen_parameters_from_the_base():
    from lightning.pytorch.strategies import DDPStrategy

    from lit_multimodal.testing import CPUDeepSpeedStrategy

    model = Tiny()
    strategy = CPUDeepSpeedStrategy(stage=2)
    assert strategy.exclude_frozen_parameters is False
    model.trainer = SimpleNamespace(strategy=strategy)
    model.exclude_frozen_parameters_under_deepspeed()
    assert strategy.exclude_frozen_parameters is True
    model.trainer = SimpleNamespace(strategy=DDPStrategy())
    model.exclude_frozen_parameters_under_deepspeed()  # nothing to switch elsewhere


def test_pandagpt_counts_the_llm_as_backbone_and_lora_plus_projection_as_added(tmp_path):
    from transformers import AutoModelForCausalLM

    from lit_multimodal.multimodal.pandagpt.module import PandaGPT
    from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama
    from tests.pandagpt_fixtures import HashEmbedder

    folder = write_tiny_llama(tmp_path / "llm", hidden_size=32, num_hidden_layers=2)
    model = PandaGPT(llm_path=str(folder), embedder=HashEmbedder(), lora_r=4)
    llm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    lora = 2 * 4 * (4 * 32 + 4 * 32)  # layers x q/k/v/o x (A + B), r 4, width 32
    projection = 1024 * 32 + 32
    counts = model.param_counts
    assert counts.backbone == sum(p.numel() for p in llm.parameters())
    assert counts.added == counts.trainable == lora + projection
    assert counts.total == counts.backbone + counts.added
    assert counts == model.count_parameters()


def test_bind_module_counts_lora_as_added_and_records_its_settings():
    from lit_multimodal.multimodal.imagebind.bind import BindModule

    fast = {"kernel_size": [2, 28, 28], "depth_kernel_size": 28, "thermal_kernel_size": 28, "audio_stride": 16}
    model = BindModule(modality="depth", preset="tiny", config=fast, tuning="lora", lora_r=2)
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    assert lora > 0
    counts = model.count_parameters()
    assert counts.added == lora
    assert counts.backbone == counts.total - lora
    assert counts.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert isinstance(model, LitMMModule)
    model.trainer = SimpleNamespace(datamodule=None)
    assert model.run_hparams() == {"method": "bind_lora", "modality": "depth", "preset": "tiny", "lora_r": 2,
                                   "temperature": 0.2, "lr": 1.6e-3, "weight_decay": 0.2}  # fmt: skip
