"""chat, export, demo, serve, evaluate and sweep read ``--config a --config b --model.x y`` exactly as fit does."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import yaml
from PIL import Image

from lit_multimodal.cli import main
from lit_multimodal.fit_config import parse_fit_config

from .conftest import tiny_config
from .pandagpt_fixtures import write_chat_fit_config

# b.yaml overrides a.yaml's lora_alpha (8) and adds max_tgt_len; the command line overrides a.yaml's lora_r (4).
B_YAML = "model:\n  init_args:\n    lora_alpha: 16\n    max_tgt_len: 77\n"
EXPECTED = {"lora_r": 2, "lora_alpha": 16, "max_tgt_len": 77}


@pytest.fixture(scope="module")
def pandagpt(tmp_path_factory):
    """The tiny LLaMA, the two config layers, a delta of the model they describe, an image and a QA manifest."""
    from lit_multimodal.multimodal.pandagpt.export import delta_state_dict
    from lit_multimodal.multimodal.pandagpt.module import PandaGPT
    from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama

    root = tmp_path_factory.mktemp("fit_config_commands")
    llm = write_tiny_llama(root / "llm")
    a = write_chat_fit_config(root, llm, "preset: tiny")
    b = root / "b.yaml"
    b.write_text(B_YAML)
    torch.manual_seed(0)
    model = PandaGPT(llm_path=str(llm), lora_r=2, lora_alpha=16, lora_dropout=0.0)
    delta = root / "pytorch_model.pt"
    torch.save(delta_state_dict(model), delta)
    image = root / "cat.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    manifest = root / "qa.jsonl"
    manifest.write_text(json.dumps({"modality": "image", "file": str(image), "question": "What?", "answer": "cat"}))
    return SimpleNamespace(root=root, a=a, b=b, delta=delta, image=image, manifest=manifest)


def _fit_args(setup, override: str) -> list[str]:
    return ["--config", str(setup.a), "--config", str(setup.b), override, "2"]


class _Page:
    """Stands in for the Gradio page: the demo is built, nothing is served."""

    def queue(self, **_):
        return self

    def launch(self, **_):
        return None


def _command_args(name: str, setup, out) -> list[str]:
    if name == "chat":
        return ["--ckpt", str(setup.delta), "--image", str(setup.image), "--prompt", "Hi", "--max_new_tokens", "1"]
    if name == "export":
        return ["--ckpt_path", str(setup.delta), "--out", str(out)]
    if name == "evaluate":
        return ["--manifest", str(setup.manifest), "--ckpt", str(setup.delta), "--max_new_tokens", "1"]
    return ["--ckpt", str(setup.delta)]  # demo, serve


@pytest.mark.parametrize(
    ("name", "override"),
    [
        ("chat", "--model.init_args.lora_r"),
        ("export", "--model.lora_r"),
        ("demo", "--model.init_args.lora_r"),
        ("serve", "--model.lora_r"),
        ("evaluate", "--model.init_args.lora_r"),
    ],
)
def test_pandagpt_commands_build_the_model_fit_parses(pandagpt, name, override, tmp_path, monkeypatch, capsys):
    import uvicorn

    from lit_multimodal.multimodal.pandagpt import demo as demo_module
    from lit_multimodal.multimodal.pandagpt import export as export_module

    built, served = [], []
    real_build = export_module.build_pandagpt

    def build_and_keep(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(export_module, "build_pandagpt", build_and_keep)
    monkeypatch.setattr(demo_module, "build_ui", lambda handler, **_: served.append(handler) or _Page())
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))

    fit_args = _fit_args(pandagpt, override)
    main([name, *_command_args(name, pandagpt, tmp_path / "out"), *fit_args])

    fit = parse_fit_config(fit_args, require_data=False).model.init_args
    assert {key: fit[key] for key in EXPECTED} == EXPECTED  # b over a, the command line over both
    (model,) = built
    assert {key: model.hparams[key] for key in EXPECTED} == EXPECTED
    lora = model.llama_model.peft_config["default"]
    assert (lora.r, lora.lora_alpha) == (2, 16)
    if name in ("demo", "serve"):
        assert len(served) == 1
    if name == "export":
        adapter = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
        assert (adapter["r"], adapter["lora_alpha"]) == (2, 16)
    capsys.readouterr()


@pytest.mark.parametrize("override", ["--model.init_args.num_prompts", "--model.num_prompts"])
def test_sweep_freezes_the_config_fit_parses(tmp_path, tiny_dataset, override):
    from lit_multimodal.sweeps.plan import LR_KEY
    from lit_multimodal.sweeps.runner import Sweep

    a = tiny_config(tmp_path, tiny_dataset)
    b = tmp_path / "b.yaml"
    b.write_text("trainer:\n  max_epochs: 3\nmodel:\n  init_args:\n    num_prompts: 5\n    prompt_dropout: 0.25\n")
    plan = Sweep(
        name="s",
        base_config=[str(a), str(b)],
        tasks=["tiny"],
        task_arg=None,
        grid={LR_KEY: [0.5]},
        search_seed=1,
        final_seeds=[2],
        search_args={},
        final_args={},
        metric="val/top1",
        extra_args=[override, "7"],
        out_dir=tmp_path / "sweep",
    )
    (spec,) = plan.search_runs(plan.validate())
    run_dir = plan.render(spec)
    frozen = yaml.safe_load((run_dir / "run_config.yaml").read_text())
    init = frozen["model"]["init_args"]
    assert (init["num_prompts"], init["prompt_dropout"], init["optim"]["base_lr"]) == (7, 0.25, 0.5)
    assert frozen["trainer"]["max_epochs"] == 3 and frozen["seed_everything"] == 1
    # lit-mm fit reads the frozen file back as what it parses from the run's arguments.
    expected = parse_fit_config([*spec.args, f"--trainer.default_root_dir={run_dir}"])
    reread = parse_fit_config(["--config", str(run_dir / "run_config.yaml")])
    assert reread.model.as_dict() == expected.model.as_dict() and reread.trainer == expected.trainer
