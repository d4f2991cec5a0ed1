"""The lit-mm command line: every shipped config parses; config and input errors are short messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_multimodal.cli import main

from .conftest import REPO, tiny_config

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _exit(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


def test_configs_exist():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    assert {"quickstart/vpt_deep.yaml", "quickstart/linear.yaml", "quickstart/full.yaml", "vpt_deep_cub.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_every_config_parses(config: Path, capsys):
    # A layer (a tuning method's configs/methods/*.yaml, quickstart/adamw.yaml) names no model class: it is parsed
    # after a complete config, as users pass it.
    layer = "class_path" not in ((yaml.safe_load(config.read_text()) or {}).get("model") or {})
    base = ["--config", str(REPO / "configs/quickstart/vpt_deep.yaml")] if layer else []
    code, out = _exit(["fit", *base, "--config", str(config), "--print_config"], capsys)
    assert code == 0, out
    printed = yaml.safe_load(out)
    assert printed["model"]["class_path"].startswith("lit_multimodal.")
    assert printed["data"]["class_path"].startswith("lit_multimodal.")


def test_several_configs_merge_left_to_right(tmp_path, capsys):
    override = tmp_path / "override.yaml"
    override.write_text("trainer:\n  max_epochs: 3\nmodel:\n  init_args:\n    num_prompts: 7\n")
    base = REPO / "configs" / "quickstart" / "vpt_deep.yaml"
    code, out = _exit(["fit", "--config", str(base), "--config", str(override), "--print_config"], capsys)
    printed = yaml.safe_load(out)
    assert code == 0
    assert printed["trainer"]["max_epochs"] == 3
    assert printed["model"]["init_args"]["num_prompts"] == 7
    assert printed["model"]["init_args"]["tuning"] == "vpt_deep"


def test_help_lists_subcommands(capsys):
    code, out = _exit(["--help"], capsys)
    assert code == 0
    for sub in ("fit", "validate", "test", "predict"):
        assert sub in out


def test_unknown_key_is_a_one_paragraph_error(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset, num_promts=3)  # misspelt key
    code, out = _exit(["fit", "--config", str(config)], capsys)
    assert code == 2
    assert "num_promts" in out
    assert "Traceback" not in out


def test_wrong_type_is_an_error(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset)
    code, out = _exit(["fit", "--config", str(config), "--trainer.max_epochs", "many"], capsys)
    assert code == 2
    assert "max_epochs" in out and "Traceback" not in out


def test_missing_config_file_is_an_error(tmp_path, capsys):
    code, out = _exit(["fit", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2
    assert "nope.yaml" in out and "Traceback" not in out


def test_unknown_tuning_value_is_an_error(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset, tuning="no_such_method")
    code, out = _exit(["fit", "--config", str(config)], capsys)
    assert code == 2
    assert "no_such_method" in out and "Traceback" not in out


def test_missing_data_root_names_the_path(tmp_path, capsys):
    config = tiny_config(tmp_path, tmp_path / "no_such_dataset")
    code, out = _exit(["fit", "--config", str(config)], capsys)
    assert code == 1
    assert "no_such_dataset" in out and "does not exist" in out and "Traceback" not in out


def test_missing_checkpoint_names_the_file(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset)
    code, out = _exit(
        ["fit", "--config", str(config), "--model.init_args.backbone.checkpoint", str(tmp_path / "missing.pth")], capsys
    )
    assert code == 1
    assert "missing.pth" in out and "Traceback" not in out


def test_class_count_mismatch_between_model_and_data(tmp_path, tiny_dataset, capsys):
    config = tiny_config(tmp_path, tiny_dataset, num_classes=10)
    code, out = _exit(["fit", "--config", str(config)], capsys)
    assert code == 1
    assert "model.num_classes is 10 but data.num_classes is 3" in out
