"""PandaGPT on other causal-LM families: tiny random-weight LLaMA-3, Mistral, Qwen2, Gemma and Phi-3 models train a
few steps and chat, each with its own prompt style and LoRA targets."""

from __future__ import annotations

import pytest
import torch

from lit_multimodal.multimodal.pandagpt.chat import PandaGPTChat
from lit_multimodal.multimodal.pandagpt.module import PandaGPT
from lit_multimodal.quickstart.tiny_llm import build_tiny_tokenizer, write_tiny_causal_lm
from tests.pandagpt_fixtures import CONVERSATIONS, HashEmbedder

CASES = {
    # family: (prompt style, LoRA targets the family table must give, the token that ends a trained reply)
    "llama3": ("llama3_instruct", ["q_proj", "k_proj", "v_proj", "o_proj"], "<|eot_id|>"),
    "mistral": ("mistral_instruct", ["q_proj", "k_proj", "v_proj", "o_proj"], "</s>"),
    "qwen2": ("qwen2", ["q_proj", "k_proj", "v_proj", "o_proj"], "<|im_end|>"),
    "gemma": ("chat_template", ["q_proj", "k_proj", "v_proj", "o_proj"], "<end_of_turn>"),
    "phi3": ("chat_template", ["qkv_proj", "o_proj"], "<|end|>"),
}


class HashEncoder:
    """ImageBind stand-in for the chat: ``encode({modality: files})``."""

    def encode(self, inputs):
        return {name: HashEmbedder().embed(name, list(files)) for name, files in inputs.items()}


@pytest.fixture(scope="module")
def base_tokenizer():
    return build_tiny_tokenizer()


@pytest.mark.parametrize("family", list(CASES))
def test_family_trains_and_chats(family, base_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    style, targets, end_token = CASES[family]
    folder = write_tiny_causal_lm(tmp_path / family, family, base_tokenizer=base_tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    torch.manual_seed(0)
    model = PandaGPT(
        llm_path=str(folder), embedder=HashEmbedder(), prompt_style=style, lora_r=4, lora_alpha=8, lora_dropout=0.0
    )
    assert model.hparams.lora_target_modules == targets
    wrapped = {name.split(".")[-4] for name, _ in model.named_parameters() if ".lora_A." in name}
    assert wrapped == set(targets)

    conv = model.conversation_tokenizer(tokenizer)
    batch = conv(CONVERSATIONS[:2])
    batch["image_paths"] = ["a.jpg", "b.jpg"]
    labels = batch["target_ids"][batch["target_ids"] != -100].tolist()
    assert labels.count(tokenizer.convert_tokens_to_ids(end_token)) == 3  # one per reply, trained

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-2)
    model.train()
    losses = []
    for _ in range(6):
        loss_sum, count, _, _ = model._shared_step(batch)
        loss = loss_sum / count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses

    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff")
    engine = PandaGPTChat(model.eval(), HashEncoder(), tokenizer)
    token, _ = engine.encode_inputs({"image": str(image)})
    answer = engine.answer([], "What is in the image?", token, max_new_tokens=6, do_sample=False)
    assert isinstance(answer, str) and "\ufffd" not in answer
    assert engine.finish_reason in ("stop", "length")
    # the generated prompt is the training layout up to the reply: same prefix, soft slot at the same place
    prompt = conv.inference_ids([], "What is in the image?")
    assert prompt["image_position"] == batch["image_position"]
    assert prompt["input_ids"][0, : conv.prefix_length].tolist() == batch["input_ids"][0, : conv.prefix_length].tolist()


def test_lora_target_override_and_unknown_family(base_tokenizer, tmp_path):
    from transformers import GPT2Config

    from lit_multimodal.multimodal.pandagpt.lora_targets import resolve_lora_targets

    assert resolve_lora_targets(GPT2Config(), ["c_attn"]) == ["c_attn"]
    with pytest.raises(ValueError, match="model_type 'gpt2'.*lora_target_modules"):
        resolve_lora_targets(GPT2Config())


@pytest.mark.parametrize(("kind", "n"), [("linear", 1), ("linear", 3), ("mlp2x_gelu", 2)])
def test_projector_variants_splice_n_tokens(kind, n, base_tokenizer, tmp_path):
    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from lit_multimodal.multimodal.pandagpt.export import delta_state_dict

    folder = write_tiny_causal_lm(tmp_path / "m", "mistral", base_tokenizer=base_tokenizer)
    model = PandaGPT(llm_path=str(folder), embedder=HashEmbedder(), projector=kind, soft_tokens=n, lora_r=2).eval()
    conv = model.conversation_tokenizer(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
    batch = conv(CONVERSATIONS[:1])
    embeds = HashEmbedder().embed("vision", ["a.jpg"])
    with torch.no_grad():
        inputs = model.build_inputs_embeds(batch["input_ids"], embeds, batch["image_position"])
    pos, hidden = batch["image_position"], inputs.shape[-1]
    proj = {k: v for k, v in model.state_dict().items() if k.startswith("llama_proj.")}
    if kind == "linear":
        expected = (embeds @ proj["llama_proj.weight"].T + proj["llama_proj.bias"]).reshape(n, hidden)
        assert set(delta_state_dict(model)) >= {"llama_proj.weight", "llama_proj.bias"}  # official delta names
    else:
        first = F.gelu(embeds @ proj["llama_proj.0.weight"].T + proj["llama_proj.0.bias"])
        expected = (first @ proj["llama_proj.2.weight"].T + proj["llama_proj.2.bias"]).reshape(n, hidden)
    torch.testing.assert_close(inputs[0, pos : pos + n], expected)
    token_embeds = model.llama_model.get_input_embeddings()(batch["input_ids"])
    torch.testing.assert_close(inputs[0, pos + n :], token_embeds[0, pos + n :])
    assert inputs.shape[1] == batch["input_ids"].shape[1]


def test_export_writes_the_mlp_projector(base_tokenizer, tmp_path):
    from safetensors.torch import load_file

    from lit_multimodal.multimodal.pandagpt.export import delta_state_dict, export

    folder = write_tiny_causal_lm(tmp_path / "m", "qwen2", base_tokenizer=base_tokenizer)
    model = PandaGPT(llm_path=str(folder), prompt_style="qwen2", projector="mlp2x_gelu", soft_tokens=2, lora_r=2)
    delta = tmp_path / "delta.pt"
    torch.save(delta_state_dict(model), delta)
    config = tmp_path / "fit.yaml"
    config.write_text(
        "model:\n  class_path: lit_multimodal.multimodal.pandagpt.module.PandaGPT\n  init_args:\n"
        f"    llm_path: {folder}\n    prompt_style: qwen2\n    projector: mlp2x_gelu\n    soft_tokens: 2\n"
        "    lora_r: 2\n"
    )
    summary = export(str(delta), str(tmp_path / "out"), fit_config=str(config))
    saved = load_file(summary["projection"])
    assert set(saved) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    torch.testing.assert_close(saved["2.weight"], model.llama_proj[2].weight.detach())
    # chat (and evaluate) read the device and project through the MLP too: two soft tokens per input
    (tmp_path / "x.jpg").write_bytes(b"")  # HashEncoder embeds the path, not the content
    token, _ = PandaGPTChat(model, HashEncoder()).encode_inputs({"image": str(tmp_path / "x.jpg")})
    assert token.shape == (2, model.llama_proj[2].out_features // 2)


def test_cli_fit_and_chat_on_qwen2_with_its_style(base_tokenizer, tmp_path, capsys):
    import json

    import yaml

    from lit_multimodal.cli import main
    from tests.pandagpt_fixtures import write_pandagpt_json

    folder = write_tiny_causal_lm(tmp_path / "qwen", "qwen2", base_tokenizer=base_tokenizer)
    json_path, images = write_pandagpt_json(tmp_path / "data", n=4)
    run_dir = tmp_path / "run"
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", "max_steps": 2,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(run_dir)},
        "model": {
            "class_path": "lit_multimodal.multimodal.pandagpt.module.PandaGPT",
            "init_args": {
                "llm_path": "/nonexistent",
                "embedder": {"class_path": "lit_multimodal.multimodal.imagebind.ImageBindEncoder",
                             "init_args": {"preset": "tiny", "progress": False}},
                "lora_r": 2,
                "max_tgt_len": 64,
            },
        },
        "data": {
            "class_path": "lit_multimodal.multimodal.pandagpt.instructions.InstructionDataModule",
            "init_args": {"json_path": str(json_path), "image_root": str(images), "batch_size": 2, "num_workers": 0},
        },
    }  # fmt: skip
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--model.llm_path", str(folder), "--model.prompt_style", "qwen2"])
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "success" and result["hparams"]["prompt_style"] == "qwen2"

    config["model"]["init_args"].update(llm_path=str(folder), prompt_style="qwen2")
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    image = str(next(images.glob("*.jpg")))
    main(["chat", "--config", str(path), "--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--image", image,
          "--prompt", "What is in the image?", "--greedy", "true", "--max_new_tokens", "4"])  # fmt: skip
    assert "Assistant: " in capsys.readouterr().out
