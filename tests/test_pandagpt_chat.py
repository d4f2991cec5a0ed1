"""PandaGPT chat: soft-token combination, prompt/history, stop rule, decoding and the ``lit-mm chat`` command."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lit_multimodal.cli import main
from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.pandagpt import chat as chat_module
from lit_multimodal.multimodal.pandagpt.chat import EMERGENT_NOTICE, ChatInputError, PandaGPTChat
from lit_multimodal.multimodal.pandagpt.export import delta_state_dict
from tests.pandagpt_fixtures import tiny_pandagpt, write_chat_fit_config, write_wav


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny PandaGPT with non-zero LoRA, its delta, a fit config naming tiny ImageBind, and input files."""
    root = tmp_path_factory.mktemp("chat")
    llm, model = tiny_pandagpt(root, seed=1)
    delta = root / "pytorch_model.pt"
    torch.save(delta_state_dict(model), delta)
    config = write_chat_fit_config(root, llm, "preset: tiny\ncache_only: true\ncache_dir: /nonexistent")
    image = root / "cat.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(image)
    audio = write_wav(root / "tone.wav")
    broken = root / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    encoder = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
    engine = PandaGPTChat(model, encoder)
    return SimpleNamespace(
        root=root, llm=llm, model=model, delta=delta, config=config, image=image, audio=audio, broken=broken,
        engine=engine, encoder=encoder,
    )  # fmt: skip


def test_modalities_are_summed_as_the_official(setup):
    token, timings = setup.engine.encode_inputs({"image": str(setup.image), "audio": str(setup.audio)})
    reference = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
    emb = reference.encode({"image": [str(setup.image)], "audio": [str(setup.audio)]})
    weight, bias = setup.model.llama_proj.weight.detach(), setup.model.llama_proj.bias.detach()
    # Σ (W e_i + b): the bias counts once per modality
    expected = (emb["image"] @ weight.T + bias) + (emb["audio"] @ weight.T + bias)
    torch.testing.assert_close(token, expected, rtol=1e-5, atol=1e-6)
    assert token.shape == (1, weight.shape[0])
    assert set(timings) == {"image", "audio", "total"}
    # audio of PandaGPT's variant is the mean of unit-norm clips (no x20 scale): norm <= 1
    assert float(emb["audio"].norm()) <= 1.0 + 1e-5


def test_greedy_answer_matches_transformers_generate_and_is_deterministic(setup):
    engine = setup.engine
    token, _ = engine.encode_inputs({"image": str(setup.image)})
    pieces = list(engine.generate([], "What is in the image?", token, max_new_tokens=12, do_sample=False))
    again = engine.answer([], "What is in the image?", token, max_new_tokens=12, do_sample=False)
    assert "".join(pieces) == again
    embeds = engine.prompt_embeds([], "What is in the image?", token)
    with torch.no_grad():
        out = engine.model.llama_model.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=engine.tokenizer.eos_token_id,
            pad_token_id=engine.tokenizer.eos_token_id,
        )
    # Bytes that are not valid UTF-8 decode to U+FFFD; the chat never shows them.
    text = engine.tokenizer.decode(out[0], skip_special_tokens=True).replace("\ufffd", "")
    expected = text.split("###")[0].rstrip()
    assert again == expected


class ScriptedLM(nn.Module):
    """A causal-LM double that emits a fixed token sequence and records its inputs."""

    def __init__(self, embedding: nn.Embedding, script: list[int]) -> None:
        super().__init__()
        self.embedding = embedding
        self.script = script
        self.calls: list[dict] = []

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def forward(self, inputs_embeds=None, input_ids=None, past_key_values=None, use_cache=True):
        self.calls.append({"inputs_embeds": inputs_embeds, "input_ids": input_ids})
        step = len(self.calls) - 1
        logits = torch.zeros(1, 1, self.embedding.num_embeddings)
        logits[0, -1, self.script[min(step, len(self.script) - 1)]] = 10.0
        return SimpleNamespace(logits=logits, past_key_values=None)


def scripted_engine(setup, continuation: str) -> tuple[PandaGPTChat, ScriptedLM]:
    tokenizer = setup.engine.tokenizer
    script = list(tokenizer(continuation, add_special_tokens=False).input_ids)
    lm = ScriptedLM(setup.model.llama_model.get_input_embeddings(), script)
    fake = SimpleNamespace(
        llama_model=lm,
        llama_proj=setup.model.llama_proj,
        llm_path=setup.model.llm_path,
        bos_token_id=None,
        pad_token_id=None,
        eval=lambda: fake,
    )
    return PandaGPTChat(fake, setup.encoder, tokenizer), lm


def test_generation_stops_at_the_marker(setup):
    engine, lm = scripted_engine(setup, "A cat on a mat.\n### Human: and then more text that must not appear")
    token = torch.zeros(1, setup.model.llama_proj.out_features)
    pieces = list(engine.generate([], "Describe it.", token, max_new_tokens=200, do_sample=False))
    assert "".join(pieces) == "A cat on a mat."
    assert all("#" not in piece for piece in pieces)
    marker_tokens = len(setup.engine.tokenizer("A cat on a mat.\n###", add_special_tokens=False).input_ids)
    assert len(lm.calls) <= marker_tokens + 1  # nothing generated past "###"


def test_history_prompt_is_built_as_the_official_demo(setup):
    engine, lm = scripted_engine(setup, "fine\n###")
    tokenizer = engine.tokenizer
    token = torch.randn(1, setup.model.llama_proj.out_features)
    history = [("What is this?", "A red cat."), ("Is it big?", "No, small.")]
    engine.answer(history, "Where is it?", token, do_sample=False)
    # spec §1.8, written out: first pair bare, later pairs and the new message with " Human: "
    text = (
        "</Img> What is this?\n### Assistant: A red cat.\n###"
        " Human: Is it big?\n### Assistant: No, small.\n###"
        " Human: Where is it?\n### Assistant:"
    )
    ids = [1, *tokenizer("### Human: <Img>", add_special_tokens=False).input_ids]
    text_ids = tokenizer(text, add_special_tokens=False).input_ids
    embeds = lm.calls[0]["inputs_embeds"][0]
    emb = lm.embedding.weight
    assert embeds.shape[0] == len(ids) + 1 + len(text_ids)
    torch.testing.assert_close(embeds[: len(ids)], emb[ids])
    torch.testing.assert_close(embeds[len(ids)], token[0])
    torch.testing.assert_close(embeds[len(ids) + 1 :], emb[text_ids])


def test_sampling_is_seeded(setup):
    engine = setup.engine
    token, _ = engine.encode_inputs({"image": str(setup.image)})
    kwargs = {"max_new_tokens": 8, "do_sample": True, "top_p": 0.9, "temperature": 1.5}
    first = engine.answer([], "Hi", token, seed=3, **kwargs)
    assert engine.answer([], "Hi", token, seed=3, **kwargs) == first


def run_cli(args: list[str], capsys, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_one_shot_image_has_no_emergent_notice(setup, capsys):
    args = ["chat", "--config", str(setup.config), "--ckpt", str(setup.delta), "--image", str(setup.image)]
    code, out, err = run_cli(
        [*args, "--prompt", "What is in the image?", "--greedy", "true", "--max_new_tokens", "10"], capsys
    )
    assert code == 0, err[-2000:]
    token, _ = setup.engine.encode_inputs({"image": str(setup.image)})
    expected = setup.engine.answer([], "What is in the image?", token, max_new_tokens=10, do_sample=False)
    assert f"Assistant: {expected}\n" in out
    assert EMERGENT_NOTICE not in err + out


def test_cli_audio_only_prints_emergent_notice_and_carries_history(setup, capsys, monkeypatch):
    seen = []
    original = chat_module.PandaGPTChat.generate

    def spy(self, history, message, embedding, **kwargs):
        seen.append((list(history), message))
        return original(self, history, message, embedding, **kwargs)

    monkeypatch.setattr(chat_module.PandaGPTChat, "generate", spy)
    args = ["chat", "--config", str(setup.config), "--ckpt", str(setup.delta), "--audio", str(setup.audio)]
    code, out, err = run_cli(
        [*args, "--greedy", "true", "--max_new_tokens", "6"],
        capsys,
        "What do you hear?\nAnd now?\n\nignored\n",
        monkeypatch,
    )
    assert code == 0, err[-2000:]
    assert EMERGENT_NOTICE in err
    answers = [line[len("Assistant: ") :] for line in out.splitlines() if line.startswith("Assistant: ")]
    assert len(seen) == 2 and len(answers) == 2
    assert seen[0] == ([], "What do you hear?")
    assert seen[1] == ([("What do you hear?", answers[0])], "And now?")


@pytest.mark.parametrize("kind", ["broken", "missing"])
def test_cli_bad_input_file_is_one_line_error(setup, capsys, kind):
    path = setup.broken if kind == "broken" else setup.root / "nope.png"
    args = ["chat", "--config", str(setup.config), "--ckpt", str(setup.delta), "--image", str(path), "--prompt", "Hi"]
    code, _, err = run_cli(args, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and str(path) in errors[0]


def test_no_input_is_an_error(setup):
    with pytest.raises(ChatInputError):
        setup.engine.encode_inputs({})


def test_a_missing_input_file_is_reported_before_anything_loads(tmp_path, monkeypatch):
    from lit_multimodal.multimodal.pandagpt import chat as chat_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input files were checked")

    monkeypatch.setattr(chat_module.PandaGPTChat, "from_files", no_model)
    with pytest.raises(chat_module.ChatInputError, match="audio file does not exist"):
        chat_module.chat(ckpt=str(tmp_path / "last.ckpt"), audio=str(tmp_path / "missing.wav"), prompt="What is it?")
