"""A new user's first runs: any logger, readable config errors, predictions on disk, researcher metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lit_multimodal.cli import main

from .conftest import tiny_config


def _run(args: list[str]) -> None:
    try:
        main(args)
    except SystemExit as exit_:
        assert not exit_.code, f"lit-mm {' '.join(args)} exited {exit_.code}"


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> Path:
    """One tiny fit with the CSV logger (2 epochs), shared by the tests that read its run directory."""
    from .conftest import write_json_split_dataset

    tmp_path = tmp_path_factory.mktemp("csv_run")
    data = write_json_split_dataset(tmp_path / "tiny")
    config = tiny_config(tmp_path, data)
    _run(["fit", "--config", str(config), "--trainer.logger", "CSVLogger"])
    return tmp_path / "run"


def test_csv_logger_run_keeps_everything_in_the_run_dir(csv_run):
    result = json.loads((csv_run / "result.json").read_text())
    assert result["status"] == "success"
    assert (csv_run / "config.yaml").is_file()
    assert (csv_run / "checkpoints" / "last.ckpt").exists()
    rows = list(csv.DictReader((csv_run / "metrics.csv").open()))
    assert any(row.get("val/top1") for row in rows)
    hparams = (csv_run / "hparams.yaml").read_text()
    assert "tuning: vpt_deep" in hparams and "tuned_percent" in hparams
    assert not (csv_run / "lightning_logs").exists()


def _error(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


def test_misspelt_key_in_a_file_is_one_paragraph_with_a_suggestion(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset, num_promts=3)
    code, out = _error(["fit", "--config", str(config)], capsys)
    assert code == 2
    assert len(out.strip().splitlines()) == 1, out
    assert str(config) in out and "model.init_args.num_promts" in out
    assert "did you mean 'model.init_args.num_prompts'" in out
    assert "usage:" not in out and "Subtypes" not in out


def test_abbreviated_option_is_not_prefix_matched(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset)
    code, out = _error(["fit", "--config", str(config), "--trainer.max_epoch", "3", "--print_config"], capsys)
    assert code == 2
    assert "trainer.max_epoch'" in out and "did you mean 'trainer.max_epochs'" in out
    assert len(out.strip().splitlines()) == 1, out


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: 3\n   devices: [1\n")
    code, out = _error(["fit", "--config", str(bad)], capsys)
    assert code == 2
    assert f"{bad} line 3" in out and "<unicode string>" not in out
    assert len(out.strip().splitlines()) == 1, out


def test_function_command_option_typo_suggests(capsys):
    code, out = _error(["report", "--sweep_di", "x"], capsys)
    assert code == 2
    assert "did you mean" in out and len(out.strip().splitlines()) == 1, out
