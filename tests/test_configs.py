"""The shipped FGVC configs agree with the dataset table and the paper's batch rule."""

from __future__ import annotations

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
