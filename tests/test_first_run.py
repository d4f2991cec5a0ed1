"""A new user's first runs: any logger, readable config errors, predictions on disk, researcher metrics."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
from lightning.pytorch.loggers import Logger

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
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # not a terminal: per-epoch lines are printed
        _run(["fit", "--config", str(config), "--trainer.logger", "CSVLogger"])
    (tmp_path / "run" / "stdout.txt").write_text(out.getvalue())
    return tmp_path / "run"


def test_csv_logger_run_keeps_everything_in_the_run_dir(csv_run):
    result = json.loads((csv_run / "result.json").read_text())
    assert result["status"] == "success"
    assert (csv_run / "config.yaml").is_file()
    assert (csv_run / "checkpoints" / "last.ckpt").exists()
    rows = list(csv.DictReader((csv_run / "metrics.csv").read_text().splitlines()))
    assert any(row.get("val/top1") for row in rows)
    hparams = (csv_run / "hparams.yaml").read_text()
    assert "tuning: vpt_deep" in hparams and "tuned_percent" in hparams
    assert not (csv_run / "lightning_logs").exists()


class RecordingLogger(Logger):
    """A logger shaped like W&B's or MLflow's: ``log_hyperparams(params)`` only, files under its own save_dir."""

    def __init__(self, save_dir: str) -> None:
        super().__init__()
        self._save_dir = save_dir

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def log_hyperparams(self, params) -> None:
        Path(self._save_dir).mkdir(parents=True, exist_ok=True)
        (Path(self._save_dir) / "params.json").write_text(json.dumps(params, default=str))

    def log_metrics(self, metrics, step=None) -> None:
        with (Path(self._save_dir) / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(metrics) + "\n")


def test_a_logger_with_its_own_folder_keeps_run_files_in_the_run_dir(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    elsewhere = tmp_path / "logger_home"
    logger = ["--trainer.logger", f"{__name__}.RecordingLogger", "--trainer.logger.save_dir", str(elsewhere)]
    _run(["fit", "--config", str(config), *logger, "--trainer.max_epochs", "1"])
    run = tmp_path / "run"
    assert json.loads((run / "result.json").read_text())["status"] == "success"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").exists()
    assert not (elsewhere / "config.yaml").exists() and not (elsewhere / "checkpoints").exists()
    params = json.loads((elsewhere / "params.json").read_text())
    assert params["tuning"] == "vpt_deep" and "tuned_percent" in params
    assert "val/top1" in (elsewhere / "metrics.jsonl").read_text()


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


def test_wrong_value_names_the_file_that_set_it(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset)
    override = tmp_path / "override.yaml"
    override.write_text("model:\n  init_args:\n    tuning: no_such_method\n")
    code, out = _error(["fit", "--config", str(config), "--config", str(override)], capsys)
    assert code == 2 and len(out.strip().splitlines()) == 1, out
    assert f"invalid value for 'model.init_args.tuning' in {override}" in out and "got no_such_method" in out


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


def test_help_is_fast_and_lists_every_command():
    import subprocess
    import sys

    from lit_multimodal.command_table import COMMANDS

    code = (
        "import sys\n"
        "from lit_multimodal.entry import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'jsonargparse', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    usage = proc.stdout.split("\n\n", 1)[0]
    for entry in COMMANDS:
        assert entry.name in usage
    names = {entry.name for entry in COMMANDS}
    assert names >= {"fit", "predict", "prepare", "sweep", "report", "chat", "demo", "export"}


def test_command_help_has_no_rest_markup(capsys):
    code, out = _error(["report", "--help"], capsys)
    assert code == 0
    assert "``" not in out and ":class:" not in out and "manifest.jsonl" in out
    assert out.startswith("usage: lit-mm")
    code, out = _error(["fit", "--model.help", "ImageClassifier"], capsys)
    assert code == 0 and "num_prompts" in out
    assert "``" not in out and ":class:" not in out and ":mod:" not in out


def test_quickstart_digits_does_not_create_a_mistyped_root(tmp_path):
    from lit_multimodal.quickstart.digits import QuickstartDigits
    from lit_multimodal.training.errors import DataError

    missing = tmp_path / "nonexistent" / "digits"
    with pytest.raises(DataError, match="does not exist"):
        QuickstartDigits(root=str(missing)).prepare_data()
    assert not missing.exists() and not missing.parent.exists()


def test_checkpoint_option_is_ckpt_path_everywhere(capsys):
    from lit_multimodal.cli import checkpoint_option_alias
    from lit_multimodal.multimodal.pandagpt.export import export

    params = __import__("inspect").signature(export).parameters
    assert "ckpt_path" in params
    assert checkpoint_option_alias(["export", "--ckpt", "a.ckpt"], params) == ["export", "--ckpt_path", "a.ckpt"]
    assert "--ckpt is deprecated; use --ckpt_path" in capsys.readouterr().err
    assert checkpoint_option_alias(["export", "--ckpt_path=a"], params) == ["export", "--ckpt_path=a"]
    # A command whose parameter is still named ckpt takes the common spelling too.
    assert checkpoint_option_alias(["chat", "--ckpt_path", "d.pt"], {"ckpt": None}) == ["chat", "--ckpt", "d.pt"]


def test_pandas_is_not_a_dependency():
    import tomllib

    from .conftest import REPO

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(dep.startswith("pandas") for dep in deps)
    assert not any("import pandas" in p.read_text() for p in (REPO / "lit_multimodal").rglob("*.py"))


def test_test_results_have_per_class_macro_and_confusion(csv_run):
    result = json.loads((csv_run / "result.json").read_text())
    metrics, details = result["metrics"], result["test_details"]
    assert "test/top5" not in metrics and not any(k.startswith("test/top3") for k in metrics)  # 3 classes
    counts = details["confusion_matrix"]
    assert details["classes"] == ["001", "002", "003"]
    assert sum(map(sum, counts)) == 12  # 3 classes x 4 test images
    # Independent reference: accuracies recomputed by hand from the confusion counts.
    per_class = [row[i] / sum(row) for i, row in enumerate(counts)]
    assert [details["per_class_accuracy"][c] for c in details["classes"]] == pytest.approx(per_class)
    assert metrics["test/macro_acc"] == pytest.approx(sum(per_class) / 3)
    assert metrics["test/top1"] == pytest.approx(sum(row[i] for i, row in enumerate(counts)) / 12)
    assert (csv_run / details["confusion_png"]).is_file()
    logged = [
        row for row in csv.DictReader((csv_run / "metrics.csv").read_text().splitlines()) if row["test/per_class/001"]
    ]
    assert float(logged[-1]["test/per_class/002"]) == pytest.approx(per_class[1])


def test_fit_prints_epoch_lines_and_a_percent_summary(csv_run):
    out = (csv_run / "stdout.txt").read_text().splitlines()
    epochs = [line for line in out if line.startswith("epoch ")]
    assert [line.split(" · ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert "val/top1" in epochs[-1] and "%" in epochs[-1] and "train/loss" in epochs[-1]
    result = json.loads((csv_run / "result.json").read_text())
    m, tuned = result["metrics"], result["params"]["tuned_percent"]
    expected = f"test top-1 {100 * m['test/top1']:.1f} % · val {100 * m['val/top1']:.1f} % · tuned {tuned:.3f} %"
    assert out[-1] == expected


def test_summary_line_format():
    from lit_multimodal.training.metrics import summary_line

    line = summary_line({"test/top1": 0.7281, "val/top1": 0.62, "test/loss": 1.0}, 0.8951)
    assert line == "test top-1 72.8 % · val 62.0 % · tuned 0.895 %"


def test_predict_writes_csv_and_jsonl_for_the_test_split(csv_run, capsys):
    ckpt = csv_run / "checkpoints" / "last.ckpt"
    out_dir = csv_run.parent / "predict_run"
    args = ["predict", "--config", str(csv_run / "config.yaml"), "--ckpt_path", str(ckpt)]
    _run([*args, "--trainer.default_root_dir", str(out_dir), "--top_k", "2"])
    rows = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    table = list(csv.DictReader((out_dir / "predictions.csv").read_text().splitlines()))
    assert len(rows) == len(table) == 12
    assert all(Path(row["path"]).is_file() and len(row["top_k"]) == 2 for row in rows)
    assert {row["true_label"] for row in rows} == {"001", "002", "003"}
    assert all(row["top_k"][0]["probability"] >= row["top_k"][1]["probability"] for row in rows)
    assert table[0]["path"] == rows[0]["path"] and table[0]["label"] == rows[0]["label"]
    # Independent reference: the predictions' accuracy is the fit run's test top-1 of the same weights.
    result = json.loads((csv_run / "result.json").read_text())
    accuracy = sum(row["label"] == row["true_label"] for row in rows) / len(rows)
    assert accuracy == pytest.approx(result["metrics"]["test/top1"])
    counts = result["test_details"]["confusion_matrix"]
    names = result["test_details"]["classes"]
    for i, name in enumerate(names):
        of_class = [row for row in rows if row["true_label"] == name]
        assert sum(row["label"] == name for row in of_class) == counts[i][i]


def test_predict_accepts_a_folder_of_images(csv_run, tmp_path):
    import shutil

    folder = tmp_path / "new_images" / "nested"
    folder.mkdir(parents=True)
    source = sorted((csv_run.parent / "tiny" / "images").rglob("*.png"))[:3]
    for i, path in enumerate(source):
        shutil.copy(path, folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "out"
    args = ["predict", "--config", str(csv_run / "config.yaml"), "--ckpt_path", str(csv_run / "checkpoints/last.ckpt")]
    _run(
        [*args, "--files", str(tmp_path / "new_images"), "--trainer.default_root_dir", str(out_dir), "--output", "csv"]
    )
    table = list(csv.DictReader((out_dir / "predictions.csv").read_text().splitlines()))
    assert sorted(Path(row["path"]).name for row in table) == ["img0.png", "img1.png", "img2.png"]
    assert all(row["true_label"] == "" and row["label"] in {"001", "002", "003"} for row in table)
    assert not (out_dir / "predictions.jsonl").exists()


def test_known_harmless_messages_are_filtered(caplog):
    import logging
    import warnings

    from lit_multimodal.runtime import filter_known_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        filter_known_warnings()
        warnings.warn("The `srun` command is available on your system but is not used. HINT: ...", stacklevel=1)
        warnings.warn("Found 144 module(s) in eval mode at the start of training. This may ...", stacklevel=1)
        warnings.warn_explicit("`x` is deprecated", FutureWarning, "modeling_llama.py", 1, module="transformers.x")
        warnings.warn("a warning that matters", stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning that matters"]

    summary = "\n  | Name | Type\n0         Modules in eval mode\n0         Total Flops"
    with caplog.at_level(logging.INFO):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: For seamless cloud logging ...")
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info(summary)
    assert "Tip" not in caplog.text and "Total Flops" not in caplog.text and "Modules in eval mode" in caplog.text

    from lit_multimodal.training.summary import QuietModelSummary

    caplog.clear()
    columns = [("Name", ["net"]), ("Type", ["ViT"]), ("Params", ["1 K"]), ("Mode", ["train"]), ("FLOPs", ["0"])]
    with caplog.at_level(logging.INFO):
        QuietModelSummary.summarize(columns, 1000, 10, 0.004, {"train": 1, "eval": 0}, 0)
    assert "Trainable params" in caplog.text and "ViT" in caplog.text
    assert "FLOPs" not in caplog.text and "Total Flops" not in caplog.text


def test_thread_count_respects_env_and_load(monkeypatch):
    import os

    import torch

    from lit_multimodal import runtime

    assert runtime.choose_threads(cpus=2, load=5.0, default=2) == 1
    assert runtime.choose_threads(cpus=16, load=3.4, default=16) == 13
    assert runtime.choose_threads(cpus=16, load=0.0, default=8) == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.configure_threads() is None  # torch follows OMP_NUM_THREADS itself
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    before = torch.get_num_threads()
    try:
        assert runtime.configure_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_progress_prints_lines_when_not_a_terminal():
    from lit_multimodal.progress import progress

    stream = io.StringIO()
    with progress("work", 20, stream=stream) as bar:
        for _ in range(20):
            bar.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "work: 0/20 (0 %)" and lines[-1] == "work: 20/20 (100 %)"
    assert 5 <= len(lines) <= 12


def test_backbone_pretraining_and_feature_cache_show_progress(tmp_path, tiny_dataset, monkeypatch, capfd):
    from lit_multimodal.quickstart import backbone as quickstart_backbone
    from lit_multimodal.vision.backbones import BackboneConfig

    monkeypatch.setattr(quickstart_backbone, "PRETRAIN_EPOCHS", 1)
    quickstart_backbone.pretrain_on_source_digits(BackboneConfig(arch="test_vit", img_size=32))
    assert "pre-training on digits 0-4 (train acc" in capfd.readouterr().err

    config = tiny_config(tmp_path, tiny_dataset, tuning="linear", feature_cache_dir=str(tmp_path / "features"))
    _run(["fit", "--config", str(config), "--trainer.max_epochs", "1", "--test_after_fit", "false"])
    err = capfd.readouterr().err
    assert "feature cache: backbone features of 12 images: 3/3 (100 %)" in err


def test_a_sweep_validates_a_csv_logger_without_save_dir(tmp_path, tiny_dataset):
    from lit_multimodal.sweeps.runner import ConfigRenderer

    config = tiny_config(tmp_path, tiny_dataset)
    parsed = ConfigRenderer().parse(["--config", str(config), "--trainer.logger", "CSVLogger"])
    assert parsed.trainer.logger.class_path.endswith("CSVLogger")
    assert parsed.trainer.logger.init_args.save_dir
