"""Trainable-only checkpoints: what is saved, and what a checkpoint that does not fit says."""

from __future__ import annotations

import pytest
from torch import nn

from lit_multimodal.training.checkpointing import CheckpointFileError, TrainableOnlyCheckpoints


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
        CheckpointFileError, match=r"tiny test module\): missing trainable tensors \['extra.bias', 'extra.weight'\]"
    ):
        Tiny(train_second=True).on_load_checkpoint(saved)
    saved["state_dict"]["stray.weight"] = saved["state_dict"]["head.weight"]
    with pytest.raises(CheckpointFileError, match=r"unexpected tensors \['stray.weight'\]"):
        Tiny().on_load_checkpoint(saved)
    Tiny().on_load_checkpoint({"epoch": 1})  # DeepSpeed: module weights live in their own files


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_every_torch_load_site_refuses_pickles_in_one_line(tmp_path, capsys):
    import torch

    from lit_multimodal.multimodal.imagebind.checkpoint import ImageBindCheckpointError, load_imagebind_state
    from lit_multimodal.multimodal.pandagpt.export import DeltaCheckpointError, read_checkpoint

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": _Payload()}}, evil)
    refused = f"{evil} contains pickled objects that are not plain tensors; refusing to load it"
    with pytest.raises(DeltaCheckpointError) as delta:
        read_checkpoint(evil)
    with pytest.raises(ImageBindCheckpointError) as imagebind:
        load_imagebind_state(evil)
    assert str(delta.value) == str(imagebind.value) == refused
    assert "this must never run" not in capsys.readouterr().out


def test_truncated_and_empty_files_name_the_file(tmp_path):
    import torch

    from lit_multimodal.training.safe_load import safe_torch_load

    path = tmp_path / "cut.ckpt"
    torch.save({"w": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointFileError, match=r"cut.ckpt: truncated or not a file written by torch.save"):
        safe_torch_load(path)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointFileError, match=r"empty.ckpt: the file is empty or truncated"):
        safe_torch_load(tmp_path / "empty.ckpt")
