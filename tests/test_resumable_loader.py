"""Mid-epoch resume: the interrupted epoch continues with the same order from the first untrained batch."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import TensorDataset

from lit_multimodal.training.checkpointing import TrainableOnlyCheckpoints
from lit_multimodal.training.resumable_loader import ResumableDataLoader


class Recorder(TrainableOnlyCheckpoints):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: list[list[int]] = []
        self.noise: list[float] = []

    def training_step(self, batch, batch_idx):
        (ids,) = batch
        self.seen.append(ids.tolist())
        self.noise.append(float(torch.rand(())))  # dropout-like use of the global generator
        return self.layer(ids.float()[:, None]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return ResumableDataLoader(TensorDataset(torch.arange(10)), batch_size=2)


def _trainer(tmp_path, **kwargs) -> Trainer:
    return Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_a_mid_epoch_checkpoint_resumes_the_epoch_where_it_stopped(tmp_path):
    seed_everything(3)
    whole = Recorder()
    _trainer(tmp_path / "whole", enable_checkpointing=False).fit(whole)
    assert len(whole.seen) == 10  # 2 epochs of 5 batches
    assert sorted(sum(whole.seen[:5], [])) == list(range(10)) and whole.seen[:5] != whole.seen[5:]

    seed_everything(3)
    first = Recorder()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    _trainer(tmp_path / "split", max_steps=3, callbacks=[saver]).fit(first)
    (ckpt,) = (tmp_path / "ckpt").glob("*step=3.ckpt")  # written after the third batch of epoch 0
    seed_everything(3)
    second = Recorder()
    _trainer(tmp_path / "split", callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt2")]).fit(second, ckpt_path=ckpt)
    assert first.seen + second.seen == whole.seen  # neither restarted nor skipped a batch
    assert first.noise + second.noise == whole.noise
