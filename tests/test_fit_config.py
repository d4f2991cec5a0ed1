"""One fit-config parser: parse_fit_config gives what lit-mm fit runs; the command table lists every command once."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from argparse import ArgumentError

import pytest
import yaml

from lit_multimodal.cli import split_fit_arguments
from lit_multimodal.command_table import COMMANDS, command, fit_epilog
from lit_multimodal.errors import DataError
from lit_multimodal.fit_config import LitMMCLI, parse_fit_config, read_fit_config

from .conftest import REPO, tiny_config


def _layers(tmp_path, tiny_dataset):
    """a.yaml (a complete VPT config, 2 prompts, 2 epochs) and b.yaml (3 epochs, 5 prompts, prompt dropout 0.25)."""
    a = tiny_config(tmp_path, tiny_dataset)
    b = tmp_path / "b.yaml"
    b.write_text("trainer:\n  max_epochs: 3\nmodel:\n  init_args:\n    num_prompts: 5\n    prompt_dropout: 0.25\n")
    return a, b


class _Parsed(Exception):
    """Carries the config LitMMCLI would instantiate (raised instead of instantiating)."""


class _StopBeforeInstantiating(LitMMCLI):
    def instantiate_classes(self) -> None:
        raise _Parsed(self.config["fit"])


@pytest.mark.parametrize("override", ["--model.init_args.num_prompts", "--model.num_prompts"])
def test_parse_fit_config_is_what_fit_runs(tmp_path, tiny_dataset, override):
    a, b = _layers(tmp_path, tiny_dataset)
    args = ["--config", str(a), "--config", str(b), override, "7", "--trainer.max_epochs=4"]
    parsed = parse_fit_config(args)
    # b overrides a, the command line wins, a's keys that b leaves alone stay, defaults are filled.
    init = parsed.model.init_args
    assert (init.num_prompts, init.prompt_dropout, init.tuning) == (7, 0.25, "vpt_deep")
    assert parsed.trainer.max_epochs == 4 and parsed.seed_everything == 7
    assert init.num_classes == 3  # from data.num_classes
    assert parsed.checkpoint.dirpath == str(tmp_path / "run" / "checkpoints")
    # The very namespace LitMMCLI builds for lit-mm fit with the same arguments (precision aside: chosen on the
    # machine that runs).
    with pytest.raises(_Parsed) as info:
        _StopBeforeInstantiating(args=["fit", *args])
    fit = info.value.args[0].clone()
    assert fit.trainer.precision is not None
    fit.trainer.precision = parsed.trainer.precision
    fit.pop("config", None)
    mine = parsed.clone()
    mine.pop("config", None)
    assert mine.as_dict() == fit.as_dict()


def test_num_classes_disagreeing_with_the_data_is_a_data_error(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset, num_classes=10)
    with pytest.raises(DataError, match="model.num_classes is 10 but data.num_classes is 3"):
        parse_fit_config(["--config", str(config)])


def test_a_config_that_does_not_validate_names_the_valid_keys(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    with pytest.raises(ArgumentError) as info:
        parse_fit_config(["--config", str(config), "--trainer.max_epoch", "3"])
    assert "trainer.max_epochs" in info.value.valid_keys


def test_read_fit_config_takes_a_path_arguments_or_a_namespace(tmp_path, tiny_dataset):
    a, b = _layers(tmp_path, tiny_dataset)
    from_path = read_fit_config(str(a))
    assert from_path.model.init_args.num_prompts == 2
    from_args = read_fit_config(["--config", str(a), "--config", str(b)])
    assert from_args.model.init_args.num_prompts == 5
    assert read_fit_config(from_args) is from_args and read_fit_config(None) is None
    # The model-reading commands accept a config without data; fit (and the sweep) do not.
    model_only = tmp_path / "model.yaml"
    model_only.write_text(yaml.safe_dump({"model": yaml.safe_load(a.read_text())["model"]}))
    assert read_fit_config(str(model_only)).model.init_args.num_prompts == 2
    with pytest.raises(ArgumentError, match="data"):
        parse_fit_config(["--config", str(model_only)])


def test_fit_arguments_are_split_from_a_commands_own_options():
    args = ["--config", "a.yaml", "--ckpt", "d.pt", "-c", "b.yaml", "--model.lora_r", "8", "--image=x.png",
            "--model.init_args.lora_alpha=16", "--data.batch_size", "2", "--seed_everything", "1", "--seed", "3",
            "--fit_config", "c.yaml", "--trainer.max_epochs=2", "--model_name", "m"]  # fmt: skip
    fit, rest = split_fit_arguments(args)
    assert fit == ["--config", "a.yaml", "--config", "b.yaml", "--model.lora_r", "8",
                   "--model.init_args.lora_alpha=16", "--data.batch_size", "2", "--seed_everything", "1",
                   "--config", "c.yaml", "--trainer.max_epochs=2"]  # fmt: skip
    assert rest == ["--ckpt", "d.pt", "--image=x.png", "--seed", "3", "--model_name", "m"]


def test_every_command_is_listed_once_and_its_target_exists():
    names = [entry.name for entry in COMMANDS]
    assert len(names) == len(set(names))
    lightning = {"fit", "validate", "test", "predict"}
    for entry in COMMANDS:
        assert command(entry.name) is entry and entry.help
        if entry.lightning:
            assert entry.target in lightning
            continue
        assert entry.name in fit_epilog()
        targets = [entry.target] if isinstance(entry.target, str) else list(entry.target.values())
        for target in targets:
            module, _, function = target.partition(":")
            assert importlib.util.find_spec(module) is not None, target
            source = ast.parse(open(importlib.util.find_spec(module).origin).read())  # noqa: SIM115
            defined = {node.name for node in source.body if isinstance(node, ast.FunctionDef)}
            assert function in defined, target
    assert command("bind").target == "fit" and command("chat").reads_fit_config
    assert not command("sweep").reads_fit_config and command("nope") is None


def test_nothing_in_the_package_imports_the_cli():
    """No import circle through cli.py: only the console entry points (and the emergence quickstart's driver) use it."""
    allowed = {"entry.py", "__main__.py", "cli.py", "emergence.py"}
    package = REPO / "lit_multimodal"
    importers = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == "lit_multimodal.cli" for name in names):
                importers.append(path.relative_to(package).as_posix())
    assert set(importers) <= allowed, importers
    runner = (package / "sweeps" / "runner.py").read_text()
    assert "parse_fit_config" in runner and "LitMMCLI" not in runner


def test_cli_old_import_path_still_gives_litmmcli():
    assert importlib.import_module("lit_multimodal.cli").LitMMCLI is LitMMCLI
