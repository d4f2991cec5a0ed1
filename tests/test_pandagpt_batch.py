"""``lit-mm chat --batch questions.jsonl --out answers.jsonl``: one answer line per record, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lit_multimodal.cli import main
from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.pandagpt import chat as chat_module
from lit_multimodal.multimodal.pandagpt.chat import PandaGPTChat
from lit_multimodal.multimodal.pandagpt.export import delta_state_dict
from tests.pandagpt_fixtures import tiny_pandagpt, write_chat_fit_config, write_wav


def test_batch_chat_answers_every_record_and_resumes(tmp_path, monkeypatch, capsys):
    llm, model = tiny_pandagpt(tmp_path, seed=3)
    delta = tmp_path / "pytorch_model.pt"
    torch.save(delta_state_dict(model), delta)
    config = write_chat_fit_config(tmp_path, llm, "preset: tiny")
    media = tmp_path / "media"
    media.mkdir()
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(media / "a.png")
    write_wav(media / "b.wav")
    questions = tmp_path / "questions.jsonl"
    lines = [
        {"id": "img", "prompt": "What is in the image?", "image": "media/a.png"},
        {"id": "aud", "prompt": "What do you hear?", "audio": "media/b.wav"},
        {"id": "gone", "prompt": "Hi", "image": "media/missing.png"},
    ]
    questions.write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n")
    answers = tmp_path / "out" / "answers.jsonl"
    generated = []
    original = PandaGPTChat.generate

    def spy(self, history, message, *args, **kwargs):
        generated.append(message)
        return original(self, history, message, *args, **kwargs)

    monkeypatch.setattr(chat_module.PandaGPTChat, "generate", spy)
    args = ["chat", "--config", str(config), "--ckpt", str(delta), "--batch", str(questions), "--out", str(answers),
            "--greedy", "true", "--max_new_tokens", "5"]  # fmt: skip
    main(args)
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["img", "aud", "gone", "4"]
    assert "missing.png" in rows[2]["error"] and "not valid JSON" in rows[3]["error"]
    assert rows[0]["modalities"] == ["image"] and rows[0]["emergent"] is False
    assert rows[1]["emergent"] is True

    # the same answer as the chat engine, greedy
    encoder = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
    engine = PandaGPTChat(model, encoder)
    token, _ = engine.encode_inputs({"image": str(media / "a.png")})
    assert rows[0]["answer"] == engine.answer([], "What is in the image?", token, max_new_tokens=5, do_sample=False)
    assert "answered 2" in capsys.readouterr().out

    # resume: a torn last line (killed run) is ignored, done ids are skipped, only the new record is answered
    with answers.open("a") as handle:
        handle.write('{"id": "par')
    with questions.open("a") as handle:
        handle.write(json.dumps({"id": "new", "question": "Again?", "image": str(media / "a.png")}) + "\n")
    generated.clear()
    main(args)
    assert generated == ["Again?"]
    again = [json.loads(line) for line in answers.read_text().splitlines() if line.startswith('{"id": "new')]
    assert len(again) == 1 and again[0]["prompt"] == "Again?"


def test_batch_needs_out(tmp_path):
    (tmp_path / "q.jsonl").write_text("")
    with pytest.raises(chat_module.ChatInputError, match="--out"):
        chat_module.chat("x.pt", batch=str(tmp_path / "q.jsonl"))
