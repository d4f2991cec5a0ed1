"""PandaGPT export/import: training checkpoint → official delta, peft adapter, merged model, and back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from lit_multimodal.cli import main
from lit_multimodal.data.instructions import InstructionDataModule
from lit_multimodal.multimodal.pandagpt.conversation import ConversationTokenizer
from lit_multimodal.multimodal.pandagpt.export import DeltaCheckpointError, export, load_delta
from lit_multimodal.multimodal.pandagpt.module import PandaGPT
from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama
from tests.pandagpt_fixtures import HashEmbedder, write_pandagpt_json

LAYERS, HIDDEN, RANK = 2, 64, 4


def make_model(llm: Path) -> PandaGPT:
    return PandaGPT(
        llm_path=str(llm), embedder=HashEmbedder(), lora_r=RANK, lora_alpha=8, lora_dropout=0.0, max_tgt_len=64
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real Lightning checkpoint after two optimizer steps (LoRA B made non-zero first)."""
    root = tmp_path_factory.mktemp("export")
    llm = write_tiny_llama(root / "llm", hidden_size=HIDDEN, num_hidden_layers=LAYERS)
    json_path, images = write_pandagpt_json(root / "data", n=4)
    torch.manual_seed(0)
    model = make_model(llm)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.05)
    data = InstructionDataModule(str(json_path), str(images), format="pandagpt", batch_size=2, num_workers=0)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    trainer.fit(model, datamodule=data)
    ckpt = root / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    model.eval()
    return {"root": root, "llm": llm, "ckpt": ckpt, "model": model}


def sample_inputs(llm: Path):
    from transformers import AutoTokenizer

    tokenizer = ConversationTokenizer(AutoTokenizer.from_pretrained(str(llm), local_files_only=True), 64)
    batch = tokenizer([[{"from": "human", "value": "What is in the image?"}, {"from": "gpt", "value": "A cat."}]])
    embeds = HashEmbedder().embed("vision", ["some/image.jpg"])
    return batch, embeds


def logits_of(model: PandaGPT, llm: Path) -> torch.Tensor:
    batch, embeds = sample_inputs(llm)
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"], embeds, batch["image_position"])


def reference_logits(causal_lm, proj_weight, proj_bias, llm: Path) -> torch.Tensor:
    """Logits computed by hand on a plain causal LM: token embeddings with ``W e + b`` at the image slot."""
    batch, embeds = sample_inputs(llm)
    pos = batch["image_position"]
    with torch.no_grad():
        tokens = causal_lm.get_input_embeddings()(batch["input_ids"])
        tokens[:, pos] = embeds @ proj_weight.T + proj_bias
        return causal_lm(inputs_embeds=tokens, attention_mask=batch["attention_mask"]).logits


def spec_keys(layers: int) -> set[str]:
    """The delta keys listed in the spec (§1.7), written out independently of the module."""
    keys = {"llama_proj.weight", "llama_proj.bias"}
    for i in range(layers):
        for proj in ("q", "k", "v", "o"):
            for mat in ("A", "B"):
                keys.add(
                    f"llama_model.base_model.model.model.layers.{i}.self_attn.{proj}_proj.lora_{mat}.default.weight"
                )
    return keys


def test_export_writes_official_delta_adapter_and_merged(trained, tmp_path):
    out = tmp_path / "out"
    summary = export(str(trained["ckpt"]), str(out), merge=True)
    assert summary["delta_tensors"] == LAYERS * 4 * 2 + 2
    delta = torch.load(out / "pytorch_model.pt", map_location="cpu", weights_only=True)
    assert type(delta).__name__ in ("dict", "OrderedDict")
    assert set(delta) == spec_keys(LAYERS)
    for key, value in delta.items():
        if ".lora_A." in key:
            assert value.shape == (RANK, HIDDEN)
        elif ".lora_B." in key:
            assert value.shape == (HIDDEN, RANK)
    assert delta["llama_proj.weight"].shape == (HIDDEN, 1024)
    assert delta["llama_proj.bias"].shape == (HIDDEN,)
    trained_params = dict(trained["model"].named_parameters())
    for key, value in delta.items():
        assert torch.equal(value, trained_params[key].detach()), key
    # the Lightning checkpoint itself holds the same tensors
    ckpt_state = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    assert set(ckpt_state) == set(delta)
    for key, value in delta.items():
        assert torch.equal(value, ckpt_state[key])

    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == RANK and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "llama_proj.safetensors").is_file()
    assert (out / "merged" / "config.json").is_file()
    assert (out / "merged" / "tokenizer.json").is_file()


def test_import_round_trip_gives_identical_tensors_and_logits(trained, tmp_path):
    out = tmp_path / "out"
    export(str(trained["ckpt"]), str(out), llm_path=str(trained["llm"]))
    fresh = make_model(trained["llm"]).eval()
    loaded = load_delta(fresh, out / "pytorch_model.pt")
    own = dict(fresh.named_parameters())
    for key, value in dict(trained["model"].named_parameters()).items():
        if value.requires_grad:
            assert torch.equal(own[key], value), key
    assert len(loaded) == LAYERS * 8 + 2
    assert torch.equal(logits_of(fresh, trained["llm"]), logits_of(trained["model"], trained["llm"]))
    # a Lightning last.ckpt loads the same way
    other = make_model(trained["llm"]).eval()
    load_delta(other, trained["ckpt"])
    assert torch.equal(logits_of(other, trained["llm"]), logits_of(trained["model"], trained["llm"]))


def test_peft_adapter_and_merged_model_reproduce_logits(trained, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    export(str(trained["ckpt"]), str(out), merge=True)
    expected = logits_of(trained["model"], trained["llm"])
    proj = load_file(str(out / "llama_proj.safetensors"))

    base = AutoModelForCausalLM.from_pretrained(str(trained["llm"]), local_files_only=True, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    via_adapter = reference_logits(peft_model, proj["weight"], proj["bias"], trained["llm"])
    torch.testing.assert_close(via_adapter, expected, rtol=0, atol=1e-6)

    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged"), local_files_only=True).eval()
    merged_proj = load_file(str(out / "merged" / "llama_proj.safetensors"))
    via_merged = reference_logits(merged, merged_proj["weight"], merged_proj["bias"], trained["llm"])
    # fp32: W + B A differs from W x + B (A x) only by rounding
    torch.testing.assert_close(via_merged, expected, rtol=1e-4, atol=1e-4)
    plain = AutoModelForCausalLM.from_pretrained(str(trained["llm"]), local_files_only=True, dtype=torch.float32)
    lora_effect = reference_logits(plain.eval(), proj["weight"], proj["bias"], trained["llm"]) - expected
    assert lora_effect.abs().max() > 1e-3  # the LoRA matrices do change the output, so the check has teeth


def test_load_delta_names_missing_and_unexpected_keys(trained, tmp_path):
    delta = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    dropped = next(k for k in delta if ".lora_A." in k)
    broken = {k: v for k, v in delta.items() if k != dropped}
    broken["llama_proj.extra"] = torch.zeros(1)
    path = tmp_path / "pytorch_model.pt"
    torch.save(broken, path)
    with pytest.raises(DeltaCheckpointError) as info:
        load_delta(make_model(trained["llm"]), path)
    message = str(info.value)
    assert str(path) in message and dropped in message and "llama_proj.extra" in message


def test_cli_export_and_bad_checkpoint_error(trained, tmp_path, capsys):
    out = tmp_path / "cli"
    main(["export", "--ckpt", str(trained["ckpt"]), "--out", str(out)])
    assert (out / "pytorch_model.pt").is_file()
    bad = tmp_path / "bad.pt"
    torch.save({"llama_proj.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(SystemExit) as info:
        main(["export", "--ckpt", str(bad), "--out", str(tmp_path / "x"), "--llm_path", str(trained["llm"])])
    assert info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and "missing" in errors[0]


def test_deepspeed_layout_folder_is_read(trained, tmp_path):
    """A folder in the DeepSpeed layout (module weights under ``module``, Lightning's wrapper prefix) loads."""
    state = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    shard = tmp_path / "last.ckpt" / "checkpoint" / "mp_rank_00_model_states.pt"
    shard.parent.mkdir(parents=True)
    torch.save({"module": {f"_forward_module.{k}": v.to(torch.bfloat16) for k, v in state.items()}}, shard)
    model = make_model(trained["llm"]).eval()
    load_delta(model, tmp_path / "last.ckpt")
    own = dict(model.named_parameters())
    for key, value in state.items():
        assert torch.equal(own[key], value.to(torch.bfloat16).float()), key
