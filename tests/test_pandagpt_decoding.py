"""Decoding defaults and what the chat/demo show: greedy where the config says so, a greedy toggle in the demo,
no invalid UTF-8 bytes, the emergent notice before the answer."""

from __future__ import annotations

import contextlib
import io
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.pandagpt import chat as chat_module
from lit_multimodal.multimodal.pandagpt.chat import EMERGENT_NOTICE, PandaGPTChat
from lit_multimodal.multimodal.pandagpt.demo import ChatState, DemoHandler
from lit_multimodal.multimodal.pandagpt.export import delta_state_dict
from tests.pandagpt_fixtures import tiny_pandagpt, write_chat_fit_config, write_wav


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoding")
    llm, model = tiny_pandagpt(root, seed=2)
    encoder = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
    image = root / "cat.png"
    Image.fromarray((np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)).save(image)
    delta = root / "pytorch_model.pt"
    torch.save(delta_state_dict(model), delta)
    return SimpleNamespace(
        root=root, llm=llm, model=model, engine=PandaGPTChat(model, encoder), image=image, delta=delta,
        audio=write_wav(root / "tone.wav"), config=write_chat_fit_config(root, llm, "preset: tiny"),
    )  # fmt: skip


def test_quickstart_config_decodes_greedily_and_the_engine_follows_the_model(setup):
    config = yaml.safe_load(open("configs/quickstart/pandagpt.yaml"))
    assert config["model"]["init_args"]["decoding"] == "greedy"
    token, _ = setup.engine.encode_inputs({"image": str(setup.image)})
    greedy = setup.engine.answer([], "Hi", token, max_new_tokens=8, do_sample=False)
    setup.model.decoding = "greedy"
    try:
        engine = PandaGPTChat(setup.model, setup.engine.encoder, setup.engine.tokenizer)
        assert engine.default_do_sample is False
        # sampling with a wide top-p would differ; the default must be the greedy answer
        assert engine.answer([], "Hi", token, max_new_tokens=8, top_p=1.0, temperature=2.0, seed=5) == greedy
    finally:
        setup.model.decoding = "sample"


def test_streaming_uses_the_cache_keyword_of_the_installed_transformers(setup):
    token, _ = setup.engine.encode_inputs({"image": str(setup.image)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = setup.engine.answer([], "Hi", token, max_new_tokens=6, do_sample=False)
    assert answer
    # a deprecated keyword would print its warning in the middle of a streamed answer
    assert not [w for w in caught if "past_key_values" in str(w.message)], [str(w.message) for w in caught]


class ScriptedLM(nn.Module):
    def __init__(self, embedding: nn.Embedding, script: list[int]) -> None:
        super().__init__()
        self.embedding, self.script, self.step = embedding, script, 0

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def forward(self, inputs_embeds=None, input_ids=None, past_key_values=None, use_cache=True):
        logits = torch.zeros(1, 1, self.embedding.num_embeddings)
        logits[0, -1, self.script[min(self.step, len(self.script) - 1)]] = 10.0
        self.step += 1
        return SimpleNamespace(logits=logits, past_key_values=None)


def test_invalid_utf8_bytes_are_never_shown(setup):
    tokenizer = setup.engine.tokenizer
    byte = {value: tokenizer.convert_tokens_to_ids(f"<0x{value:02X}>") for value in (0xC3, 0xA9, 0xE2, 0x82, 0x0A)}
    words = tokenizer("A cat", add_special_tokens=False).input_ids
    # a lone lead byte, then "é" spelled as two bytes, then an orphan continuation byte, then text and the stop
    script = [byte[0xE2], *words, byte[0xC3], byte[0xA9], byte[0x82], *words,
              *tokenizer("\n###", add_special_tokens=False).input_ids]  # fmt: skip
    lm = ScriptedLM(setup.model.llama_model.get_input_embeddings(), script)
    fake = SimpleNamespace(llama_model=lm, llama_proj=setup.model.llama_proj, llm_path=setup.model.llm_path,
                           bos_token_id=None, pad_token_id=None, eval=lambda: fake)  # fmt: skip
    engine = PandaGPTChat(fake, setup.engine.encoder, tokenizer)
    pieces = list(engine.generate([], "Hi", torch.zeros(1, 64), max_new_tokens=40, do_sample=False))
    answer = "".join(pieces)
    assert all("\ufffd" not in piece for piece in pieces)
    # transformers decodes the whole run C3 A9 82 as invalid: four U+FFFD and no "é"
    reference = tokenizer.decode(script[:-3], skip_special_tokens=True)
    assert reference.count("\ufffd") == 4 and "é" not in reference
    assert answer.strip() == "A caté A cat"


def test_demo_greedy_toggle_and_emergent_flag_before_the_answer(setup, monkeypatch):
    handler = DemoHandler(setup.engine, seed=0)
    calls = []
    original = PandaGPTChat.generate

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PandaGPTChat, "generate", spy)
    replies = handler.respond(ChatState(), {"audio": str(setup.audio)}, "Hi", max_new_tokens=6, top_p=0.0,
                              greedy=True)  # fmt: skip
    first = next(replies)
    assert first.emergent is True and first.error is None and first.history[-1] == ("Hi", "")
    assert calls == []  # shown before generation starts
    rest = list(replies)
    assert rest[-1].done and rest[-1].error is None and calls[0]["do_sample"] is False
    token, _ = setup.engine.encode_inputs({"audio": str(setup.audio)})
    assert rest[-1].history[-1][1] == setup.engine.answer([], "Hi", token, max_new_tokens=6, do_sample=False)


def test_cli_prints_the_emergent_notice_before_the_answer(setup):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        chat_module.chat(str(setup.delta), str(setup.config), audio=str(setup.audio), prompt="Hi", greedy=True,
                         max_new_tokens=4)  # fmt: skip
    text = out.getvalue()
    assert EMERGENT_NOTICE in text and "Assistant: " in text
    assert text.index(EMERGENT_NOTICE) < text.index("Assistant: ")
