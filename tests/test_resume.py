"""Resuming and evaluating from checkpoints: exact resume, a run killed after its last epoch, dangling
``last.ckpt``, checkpoints that do not match the requested model, pickled or truncated files, and
validate/test leaving the fit config alone."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from lit_multimodal.cli import main
from lit_multimodal.training.checkpointing import CheckpointFileError, resolve_ckpt_path

from .conftest import tiny_config


def _fit(config: Path, run: Path, *extra: str) -> dict:
    main(["fit", "--config", str(config), f"--trainer.default_root_dir={run}", *extra])
    return json.loads((run / "result.json").read_text())


def _trainable(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def _exit(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path, tiny_dataset):
    # VPT-Deep with prompt dropout and a shuffled train split: data order and dropout both draw random numbers.
    config = tiny_config(tmp_path, tiny_dataset)
    args = ["--trainer.max_epochs=4", "--test_after_fit=false"]
    whole = _fit(config, tmp_path / "whole", *args)
    # 9 training images in batches of 4: 3 steps an epoch, so max_steps 6 stops after epoch 2 (its checkpoint
    # written) without touching the 4-epoch schedule; the second start resumes from last.ckpt.
    _fit(config, tmp_path / "split", *args, "--trainer.max_steps=6")
    assert torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed = _fit(config, tmp_path / "split", *args, "--ckpt_path=last")
    assert resumed["epochs_completed"] == whole["epochs_completed"] == 4
    assert resumed["metrics"]["val/top1"] == whole["metrics"]["val/top1"]
    assert resumed["metrics"]["val/loss"] == whole["metrics"]["val/loss"]
    first, second = _trainable(tmp_path / "whole"), _trainable(tmp_path / "split")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_a_run_killed_after_its_last_checkpoint_still_gets_its_metrics(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    run = tmp_path / "run"
    first = _fit(config, run, "--trainer.max_epochs=1", "--test_after_fit=false")
    (run / "result.json").unlink()  # killed after last.ckpt was linked, before result.json was written
    again = _fit(config, run, "--trainer.max_epochs=1", "--test_after_fit=false", "--ckpt_path=last")
    assert again["status"] == "success"
    assert again["metrics"]["val/top1"] == first["metrics"]["val/top1"]  # validated from the restored weights
    assert again["metrics"]["val/loss"] == pytest.approx(first["metrics"]["val/loss"], abs=1e-6)


def _save(path: Path, epoch: int) -> Path:
    torch.save({"epoch": epoch, "state_dict": {"w": torch.ones(1) * epoch}}, path)
    return path


def test_a_dangling_last_checkpoint_resolves_to_the_newest_readable_epoch(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    older = _save(folder / "epoch=0-step=3.ckpt", 0)
    newest = _save(folder / "epoch=1-step=6.ckpt", 1)
    os.utime(older, (1, 1))
    (folder / "last.ckpt").symlink_to("epoch=0-step=3.ckpt")
    assert resolve_ckpt_path("last", folder) == str(folder / "last.ckpt")  # intact link: used as it is
    (folder / "last.ckpt").unlink()
    (folder / "last.ckpt").symlink_to("epoch=2-step=9.ckpt")  # Lightning deleted the target, no relink yet
    assert resolve_ckpt_path("last", folder) == str(newest)
    assert resolve_ckpt_path(str(folder / "last.ckpt"), folder) == str(newest)  # the documented explicit form
    newest.write_bytes(newest.read_bytes()[:40])  # a newest file cut short by a kill is passed over
    assert resolve_ckpt_path("last", folder) == str(older)
    older.unlink()
    newest.unlink()
    with pytest.raises(CheckpointFileError, match="epoch=2-step=9.ckpt, which does not exist"):
        resolve_ckpt_path(str(folder / "last.ckpt"), folder)
    assert resolve_ckpt_path("last", folder) is None  # nothing to resume from: a fresh start
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), folder)


def _fake_checkpoint(path: Path, **hparams) -> Path:
    saved = {"tuning": "linear", "num_prompts": 50, "num_classes": 3, "backbone": {"arch": "test_vit", "img_size": 32}}
    saved.update(hparams)
    torch.save({"epoch": 0, "pytorch-lightning_version": "2.6.6", "hyper_parameters": saved, "state_dict": {}}, path)
    return path


@pytest.mark.parametrize(
    ("saved", "message"),
    [
        ({}, "tuning: checkpoint 'linear', requested 'vpt_deep'"),
        ({"tuning": "vpt_deep", "num_prompts": 10}, "num_prompts: checkpoint 10, requested 2"),
        (
            {"tuning": "vpt_deep", "num_prompts": 2, "backbone": {"arch": "vit_b16"}},
            "backbone.arch: checkpoint 'vit_b16'",
        ),
    ],
)
def test_a_checkpoint_of_another_model_is_an_error_naming_what_differs(tmp_path, tiny_dataset, capsys, saved, message):
    config = tiny_config(tmp_path, tiny_dataset)  # vpt_deep, 2 prompts, test_vit
    ckpt = _fake_checkpoint(tmp_path / "other.ckpt", **saved)
    code, out = _exit(["fit", "--config", str(config), "--ckpt_path", str(ckpt)], capsys)
    assert code == 1 and "Traceback" not in out
    assert "other.ckpt does not match the requested model" in out and message in out
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing ran


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_or_truncated_ckpt_path_is_a_one_line_error(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset)
    evil = tmp_path / "evil.ckpt"
    torch.save({"epoch": 0, "hyper_parameters": {"x": _Payload()}}, evil)
    code, out = _exit(["fit", "--config", str(config), "--ckpt_path", str(evil)], capsys)
    assert code == 1 and "this must never run" not in out
    assert out.strip() == f"error: {evil} contains pickled objects that are not plain tensors; refusing to load it"
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"x": _Payload()}))
    code, out = _exit(["test", "--config", str(config), "--ckpt_path", str(legacy)], capsys)
    assert code == 1 and out.strip().endswith(
        "legacy.pth contains pickled objects that are not plain tensors; refusing to load it"
    )
    truncated = _fake_checkpoint(tmp_path / "cut.ckpt", tuning="vpt_deep", num_prompts=2)
    truncated.write_bytes(truncated.read_bytes()[:100])
    code, out = _exit(["fit", "--config", str(config), "--ckpt_path", str(truncated)], capsys)
    assert code == 1 and "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert "cut.ckpt: truncated or not a file written by torch.save" in out


def test_validate_writes_its_own_config_and_keeps_the_fit_config_rerunnable(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    run = tmp_path / "run"
    _fit(config, run, "--trainer.max_epochs=1", "--test_after_fit=false")
    fit_config = (run / "config.yaml").read_text()
    main(["validate", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    assert (run / "config.yaml").read_text() == fit_config
    assert "ckpt_path" in (run / "validate_config.yaml").read_text()
    assert json.loads((run / "validate_result.json").read_text())["status"] == "success"
    # The fit config still parses as a fit config (validate's keys such as `verbose` would be refused).
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(run / "config.yaml"), "--print_config"])
    assert info.value.code in (0, None)


def test_resuming_from_a_checkpoint_with_missing_tensors_is_a_one_line_error(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset)
    ckpt = tmp_path / "partial.ckpt"
    hparams = {
        "tuning": "vpt_deep",
        "num_prompts": 2,
        "num_classes": 3,
        "backbone": {"arch": "test_vit", "img_size": 32},
    }
    state = {"net.head.weight": torch.zeros(3, 64)}  # the settings match, the prompts are missing
    torch.save({"hyper_parameters": hparams, "state_dict": state}, ckpt)  # not written by Lightning
    code, out = _exit(["fit", "--config", str(config), "--ckpt_path", str(ckpt)], capsys)
    assert code == 1 and out.strip().startswith(
        f"error: {ckpt}: not a Lightning checkpoint (no 'pytorch-lightning_version')"
    )
    torch.save(
        {
            "epoch": 0,
            "global_step": 3,
            "pytorch-lightning_version": "2.6.6",
            "hyper_parameters": hparams,
            "state_dict": state,
        },
        ckpt,
    )
    code, out = _exit(["fit", "--config", str(config), "--ckpt_path", str(ckpt)], capsys)
    assert code == 1 and "Traceback" not in out and "KeyError" not in out
    assert "error: checkpoint does not match this model (tuning 'vpt_deep'): missing trainable tensors" in out
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"
