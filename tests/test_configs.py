"""The shipped configs: FGVC configs agree with the dataset table and the paper's rules; every sweep file validates.

Every fit config under configs/ is parsed by ``tests/test_cli.py::test_every_config_parses``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_multimodal.data.fgvc import FGVC_DATASETS
from tests.conftest import REPO

METHODS = ("vpt_deep", "vpt_shallow", "linear", "full")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dataset", sorted(FGVC_DATASETS))
def test_fgvc_config_matches_the_dataset_table(method, dataset):
    info = FGVC_DATASETS[dataset]
    config = yaml.safe_load((REPO / "configs" / f"{method}_{dataset}.yaml").read_text())
    data, model = config["data"]["init_args"], config["model"]["init_args"]
    assert data["num_classes"] == info.num_classes
    assert data["image_root"] == info.image_root
    assert data["root"].endswith(info.vpt_folder)
    assert model["tuning"] == method
    assert config["trainer"]["max_epochs"] == 100
    if method.startswith("vpt"):
        assert data["batch_size"] == (64 if model["num_prompts"] >= 100 else 128)  # paper Table 8
    if method == "full":
        assert model["optim"]["name"] == "adamw" and model["backbone"]["dropout"] == 0.1


@pytest.mark.parametrize(("name", "pooling"), [("vpt_deep_cub_mae", "mean"), ("vpt_deep_cub_mocov3", "cls")])
def test_self_supervised_backbone_configs(name, pooling):
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    assert config["model"]["init_args"]["backbone"]["pooling"] == pooling


SWEEPS = sorted((REPO / "experiments").rglob("*.yaml"))


@pytest.fixture(scope="module")
def renderer():
    from lit_multimodal.sweeps.runner import ConfigRenderer

    return ConfigRenderer()  # the real fit parser, built once for every sweep file


def _validate_sweep_file(path: Path, renderer) -> dict[str, str]:
    """Parses a sweep file with the sweep command's parser and its first run with the fit parser.

    The first task with the first grid point, in both stages (what ``lit-mm sweep --dry_run true`` checks for every
    task and point; one point keeps this fast). Returns the tuning method of that task.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    from lit_multimodal.sweeps.runner import Sweep, _check_known_tasks, sweep

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(sweep)
    spec = parser.parse_args(["--config", str(path)])
    assert spec.tasks and spec.grid and spec.search_args is not None and spec.final_args is not None
    _check_known_tasks(spec.tasks, spec.task_arg)
    plan = Sweep(
        name=spec.name,
        base_config=list(spec.base_config),
        tasks=spec.tasks[:1],
        task_arg=spec.task_arg,
        grid={key: values[:1] for key, values in spec.grid.items()},
        search_seed=spec.search_seed,
        final_seeds=list(spec.final_seeds or [spec.search_seed]),
        search_args=dict(spec.search_args),
        final_args=dict(spec.final_args),
        metric=spec.metric,
        extra_args=list(spec.extra_args or []),
        out_dir=Path(spec.out_dir or "runs"),
        renderer=renderer,
    )
    return plan.validate()


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_sweep_file_validates(path, renderer, monkeypatch):
    monkeypatch.chdir(REPO)  # base_config paths are relative to the repository
    tunings = _validate_sweep_file(path, renderer)
    assert len(tunings) == 1 and "?" not in tunings.values()


def test_a_sweep_file_with_a_misspelt_grid_key_does_not_validate(tmp_path, renderer, monkeypatch):
    from lit_multimodal.sweeps.plan import SweepError

    monkeypatch.chdir(REPO)
    text = (REPO / "experiments" / "quickstart_vpt_deep.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("model.init_args.optim.weight_decay", "model.init_args.optim.weight_decy"))
    with pytest.raises(SweepError, match="weight_decy"):
        _validate_sweep_file(bad, renderer)
