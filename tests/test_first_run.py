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
