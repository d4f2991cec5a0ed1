"""``quickstart:`` references: resolved once by the command line, refused unresolved by the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonargparse import Namespace

from lit_multimodal.cli import main
from lit_multimodal.quickstart import backbone as quickstart_backbone
from lit_multimodal.quickstart.references import resolve_references
from lit_multimodal.references import UnresolvedReference
from lit_multimodal.training.errors import SettingError
from lit_multimodal.vision.backbones import BackboneConfig

from .conftest import tiny_config

QUICK_BACKBONE = {"arch": "test_vit", "img_size": 32, "checkpoint": "quickstart:digits0-4"}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache, and a one-epoch backbone pre-training (the recipe's 30 epochs are not what is tested)."""
    monkeypatch.setenv("LIT_MM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quickstart_backbone, "PRETRAIN_EPOCHS", 1)
    return tmp_path / "cache"


def test_references_in_namespaces_dicts_and_lists_become_paths(cache):
    config = Namespace(
        model=Namespace(init_args=Namespace(backbone=Namespace(**QUICK_BACKBONE, pooling="cls", overrides={}))),
        data={"init_args": {"tokenizer": "quickstart:tiny-llama", "files": ["a.png", "quickstart-notes.txt"]}},
    )
    assert resolve_references(config) is config
    checkpoint = Path(config.model.init_args.backbone.checkpoint)
    assert checkpoint.parent == cache / "quickstart" and checkpoint.name.startswith("backbone-digits0-4-")
    assert checkpoint.is_file()
    # the file is the one built for this geometry, and another geometry gets another file
    geometry = BackboneConfig(arch="test_vit", img_size=32)
    assert checkpoint == quickstart_backbone.ensure_quickstart_backbone(geometry)
    other = resolve_references({"checkpoint": "quickstart:digits0-4", "arch": "test_vit", "img_size": 48})
    assert Path(other["checkpoint"]) != checkpoint
    tokenizer = Path(config.data["init_args"]["tokenizer"])
    assert (tokenizer / "config.json").is_file() and (tokenizer / "tokenizer.json").is_file()
    assert config.data["init_args"]["files"] == ["a.png", "quickstart-notes.txt"]  # not references: untouched


def test_unknown_and_misplaced_references_name_the_key(cache):
    with pytest.raises(SettingError, match=r"backbone\.checkpoint is 'quickstart:digits9'.*digits0-4"):
        resolve_references({"model": {"init_args": {"backbone": {"checkpoint": "quickstart:digits9"}}}})
    with pytest.raises(SettingError, match=r"model\.init_args\.llm_path .*backbone checkpoint.*checkpoint"):
        resolve_references({"model": {"init_args": {"llm_path": "quickstart:digits0-4"}}})
    assert not cache.exists()  # nothing was built for a bad reference


def test_models_refuse_an_unresolved_reference_and_say_how_to_resolve_it():
    from lit_multimodal.multimodal.pandagpt.module import PandaGPT
    from lit_multimodal.vision.checkpoints import resolve_checkpoint_path

    with pytest.raises(UnresolvedReference, match=r"model\.backbone\.checkpoint .*resolve_references"):
        resolve_checkpoint_path(BackboneConfig(**QUICK_BACKBONE))
    with pytest.raises(UnresolvedReference, match=r"model\.llm_path is 'quickstart:tiny-llama'.*resolve_references"):
        PandaGPT(llm_path="quickstart:tiny-llama")


def test_a_resolved_quickstart_run_resumes_from_its_checkpoint(cache, tmp_path, tiny_dataset):
    """The CLI resolves the backbone before building; resuming compares the requested and saved settings, and the
    saved run (the resolved file) still matches the config that names the reference."""
    config = tiny_config(tmp_path, tiny_dataset, tuning="linear", backbone=QUICK_BACKBONE)
    run = tmp_path / "run"
    args = ["fit", "--config", str(config), "--trainer.max_epochs", "1", "--test_after_fit", "false"]
    main(args)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    built = saved["model"]["init_args"]["backbone"]["checkpoint"]
    assert Path(built).parent == cache / "quickstart" and Path(built).is_file()
    assert json.loads((run / "result.json").read_text())["status"] == "success"
    main([*args[:-4], "--trainer.max_epochs", "2", "--test_after_fit", "false", "--ckpt_path", "last"])
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "success" and result["epochs_completed"] == 2


def test_pandagpt_commands_resolve_the_llm_where_they_build_the_model(cache, tmp_path):
    from lit_multimodal.multimodal.pandagpt.export import build_pandagpt

    config = tmp_path / "fit.yaml"
    model = {"llm_path": "quickstart:tiny-llama", "embed_dim": 16, "lora_r": 2, "lora_alpha": 4, "dtype": "float32"}
    model_config = {"class_path": "lit_multimodal.multimodal.pandagpt.module.PandaGPT", "init_args": model}
    config.write_text(yaml.safe_dump({"model": model_config}))
    built = build_pandagpt(str(config))
    assert Path(built.llm_path) == cache / "quickstart" / "pandagpt" / "tiny-llama-v1"
    assert built.hparams.llm_path == built.llm_path  # a checkpoint records the folder, not the reference
