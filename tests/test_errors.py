"""One base class for bad input: every user-error class is a UserError (and a ValueError); the CLI prints one line."""

from __future__ import annotations

import importlib

import pytest

from lit_multimodal.cli import main
from lit_multimodal.errors import UserError, error_message, find_user_error

# Where each class is imported from today (the old import paths keep working).
USER_ERROR_CLASSES = [
    "lit_multimodal.data.base:DataError",
    "lit_multimodal.data:DataError",
    "lit_multimodal.vision.checkpoint_readers:CheckpointError",
    "lit_multimodal.vision.checkpoints:CheckpointError",
    "lit_multimodal.sweeps.plan:SweepError",
    "lit_multimodal.sweeps.runner:SweepIncompleteError",
    "lit_multimodal.sweeps.launchers:SlurmQueryError",
    "lit_multimodal.multimodal.imagebind.preprocess.errors:InputError",
    "lit_multimodal.multimodal.imagebind.checkpoint:ImageBindCheckpointError",
    "lit_multimodal.multimodal.pandagpt.conversation:ConversationError",
    "lit_multimodal.training.safe_load:CheckpointFileError",
    "lit_multimodal.training.checkpointing:CheckpointFileError",
    "lit_multimodal.training.errors:SettingError",
    "lit_multimodal.training.errors:TrainingDiverged",
    "lit_multimodal.multimodal.pandagpt.export:DeltaCheckpointError",
    "lit_multimodal.multimodal.pandagpt.chat:ChatInputError",
    "lit_multimodal.data.instructions:BadRecord",
    "lit_multimodal.multimodal.pandagpt.serve_request:RequestError",
]


@pytest.mark.parametrize("where", USER_ERROR_CLASSES)
def test_every_bad_input_class_is_a_user_error(where):
    module, _, name = where.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, UserError) and issubclass(cls, ValueError), cls.__mro__


def test_shared_classes_are_the_same_objects_everywhere():
    from lit_multimodal import errors
    from lit_multimodal.data.base import DataError
    from lit_multimodal.multimodal.pandagpt.export import DeltaCheckpointError
    from lit_multimodal.vision.checkpoint_readers import CheckpointError

    assert DataError is errors.DataError and CheckpointError is errors.CheckpointError
    assert issubclass(DeltaCheckpointError, errors.CheckpointError)


def test_the_one_line_names_file_line_and_key_when_given():
    assert str(UserError("no tasks given")) == "no tasks given"
    assert str(UserError("expected an integer", key="data.batch_size")) == "data.batch_size: expected an integer"
    err = UserError("expected an integer", file="a.yaml", line=3, key="data.batch_size")
    assert str(err) == "a.yaml:3: data.batch_size: expected an integer"
    assert str(UserError("not a tensor", file="w.pt")) == "w.pt: not a tensor"
    assert (err.file, err.line, err.key, err.message) == ("a.yaml", 3, "data.batch_size", "expected an integer")
    # A subclass with its own constructor keeps its message.
    from lit_multimodal.data.instructions import BadRecord

    record = BadRecord("no_image", "record has no 'image'")
    assert str(record) == "record has no 'image'" and record.kind == "no_image"


def test_a_user_error_is_found_behind_wrappers():
    cause = UserError("bad", key="k")
    try:
        try:
            raise cause
        except UserError as err:
            raise RuntimeError("wrapped while instantiating") from err
    except RuntimeError as outer:
        assert find_user_error(outer) is cause
    assert find_user_error(RuntimeError("other")) is None
    worker = ValueError(
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nlit_multimodal.errors.DataError: a.jpg: cannot read image'
    )
    assert error_message(worker) == "a.jpg: cannot read image"


@pytest.fixture
def threads_chosen(monkeypatch):
    """``OMP_NUM_THREADS`` set, so the CLI's load-dependent thread notice stays off and stderr holds only the error."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_cli_prints_one_line_for_a_sweep_error(capsys, threads_chosen):
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--name", "t", "--base_config", "[]", "--tasks", "[]", "--dry_run", "true"])
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert err.strip() == "error: no tasks given", err


def test_cli_prints_file_line_and_key_of_any_user_error(monkeypatch, capsys, threads_chosen):
    report_module = importlib.import_module("lit_multimodal.sweeps.report")  # the package re-exports report()

    def report(sweep_dir: str) -> None:
        """Fails as a command that found a bad value in a file would.

        Args:
            sweep_dir: unused.
        """
        raise UserError("expected a number, got 'many'", file="runs/x/summary.json", line=7, key="metrics.top1")

    monkeypatch.setattr(report_module, "report", report)
    with pytest.raises(SystemExit) as info:
        main(["report", "--sweep_dir", "anything"])
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert err.strip().splitlines() == ["error: runs/x/summary.json:7: metrics.top1: expected a number, got 'many'"]
