"""The one soft-token splice: training's inputs and chat's prompt are built by the same function."""

from __future__ import annotations

import torch

from lit_multimodal.multimodal.pandagpt.splice import splice_soft_tokens


def test_splice_replaces_exactly_the_slot_and_casts_to_the_embeddings():
    tokens = torch.randn(2, 7, 5)
    soft = torch.randn(2, 2, 5, dtype=torch.float64)
    out = splice_soft_tokens(tokens, soft, 3)
    expected = tokens.clone()
    for b in range(2):  # slot by slot, the official cat([bos, prefix, soft, text]) of each sample
        expected[b, 3] = soft[b, 0].float()
        expected[b, 4] = soft[b, 1].float()
    assert out.dtype == torch.float32 and out.shape == (2, 7, 5)
    assert torch.equal(out, expected)


def test_chat_prompt_and_training_inputs_are_the_same_splice(tmp_path):
    from transformers import AutoTokenizer

    from lit_multimodal.multimodal.pandagpt.chat import PandaGPTChat
    from tests.pandagpt_fixtures import tiny_pandagpt

    llm, model = tiny_pandagpt(tmp_path)
    engine = PandaGPTChat(model, encoder=None, tokenizer=AutoTokenizer.from_pretrained(llm, local_files_only=True))
    embedding = torch.randn(1, 1024)
    with torch.no_grad():
        token = model.project(embedding)[0]  # what encode_inputs returns for one input: (soft_tokens, hidden)
        chat = engine.prompt_embeds([], "What is in the image?", token)
        batch = engine.conversation.inference_ids([], "What is in the image?")
        training = model.build_inputs_embeds(batch["input_ids"], embedding, batch["image_position"])
    assert torch.equal(chat, training)
    position = int(batch["image_position"])
    assert torch.equal(chat[0, position], token[0])
