"""Trainable-only checkpoints: what is saved, and what a checkpoint that does not fit says."""

from __future__ import annotations

import pytest
from torch import nn

from lit_multimodal.training.checkpointing import TrainableOnlyCheckpoints


class Tiny(TrainableOnlyCheckpoints):
    def __init__(self, train_second: bool = False) -> None:
        super().__init__()
        self.frozen = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)
        self.frozen.requires_grad_(False)
        self.extra = nn.Linear(2, 2)
        self.extra.requires_grad_(train_second)

    def checkpoint_description(self) -> str:
        return "tiny test module"


def test_only_trainable_tensors_are_saved():
    model = Tiny()
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == {"head.weight", "head.bias"} and checkpoint["trainable_only"]
    model.on_load_checkpoint(checkpoint)  # fits: no error


def test_a_checkpoint_that_does_not_fit_names_the_tensors():
    saved = {"state_dict": Tiny().state_dict()}
    Tiny().on_save_checkpoint(saved)
    with pytest.raises(
        KeyError, match=r"tiny test module\): missing trainable tensors \['extra.bias', 'extra.weight'\]"
    ):
        Tiny(train_second=True).on_load_checkpoint(saved)
    saved["state_dict"]["stray.weight"] = saved["state_dict"]["head.weight"]
    with pytest.raises(KeyError, match=r"unexpected tensors \['stray.weight'\]"):
        Tiny().on_load_checkpoint(saved)
    Tiny().on_load_checkpoint({"epoch": 1})  # DeepSpeed: module weights live in their own files
