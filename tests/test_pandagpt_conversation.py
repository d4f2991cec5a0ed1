"""PandaGPT token layout: segment-wise tokenization, the 8-position prefix, padding, truncation, prompts."""

from __future__ import annotations

import pytest
import torch

from lit_multimodal.multimodal.pandagpt.conversation import (
    ConversationError,
    ConversationTokenizer,
    check_conversation,
    inference_prompt,
    inference_text,
)
from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama
from tests.pandagpt_fixtures import CONVERSATIONS

Q1, A1, Q2, A2 = (turn["value"] for turn in CONVERSATIONS[0])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = write_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def test_tiny_tokenizer_is_llama_like(tokenizer):
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer("hi").input_ids[0] == 1  # BOS with special tokens on
    assert tokenizer.convert_ids_to_tokens(ids(tokenizer, "### Human: <Img>")) == ["▁###", "▁Human:", "▁<Img>"]
    assert tokenizer.convert_ids_to_tokens(ids(tokenizer, "</Img> "))[0] == "▁</Img>"
    # "\n###" ends a reply as in LLaMA: <0x0A> (id 13, as LLaMA's), "##", "#".
    reply = ids(tokenizer, "A cat.\n###")
    assert reply[-3] == 13
    assert tokenizer.convert_ids_to_tokens(reply[-3:]) == ["<0x0A>", "##", "#"]
    assert tokenizer.decode(reply) == "A cat.\n###"


def test_two_turn_layout_matches_segments_tokenized_by_hand(tokenizer):
    bos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id
    prefix = [bos, *ids(tokenizer, "### Human: <Img>")]
    # Spec §1.3, one segment at a time.
    s0 = ids(tokenizer, "</Img> " + Q1 + "\n### Assistant:")
    s1 = ids(tokenizer, A1 + "\n###")
    s2 = ids(tokenizer, "Human: " + Q2 + "\n### Assistant:")
    s3 = ids(tokenizer, A2 + "\n###")
    expected_text = s0 + s1 + s2 + s3
    expected_targets = [-100] * (len(prefix) + 1) + [-100] * len(s0) + s1 + [-100] * len(s2) + s3

    batch = ConversationTokenizer(tokenizer, max_tgt_len=1024)([CONVERSATIONS[0]])
    position = batch["image_position"]
    assert position == len(prefix) == 4  # <s> ▁### ▁Human: ▁<Img>
    input_ids = batch["input_ids"][0].tolist()
    assert input_ids[:position] == prefix
    assert input_ids[position + 1 :] == expected_text
    assert batch["target_ids"][0].tolist() == expected_targets
    assert batch["attention_mask"][0].tolist() == [1] * len(input_ids)
    assert pad not in expected_text  # the official masks by ids != pad, so this must hold for the check above

    # The rendered training prompt of spec §1.3 (no EOS anywhere, replies end with "\n###").
    rendered = tokenizer.decode(input_ids[position + 1 :])
    assert rendered == f"</Img> {Q1}\n### Assistant: {A1}\n### Human: {Q2}\n### Assistant: {A2}\n###"
    assert tokenizer.eos_token_id not in input_ids[1:position] + input_ids[position + 1 :]


def test_right_padding_with_the_pad_id(tokenizer):
    conv = ConversationTokenizer(tokenizer, max_tgt_len=1024, bos_token_id=1, pad_token_id=2)
    long, short = CONVERSATIONS[0], CONVERSATIONS[1]
    single = [conv([c]) for c in (long, short)]
    batch = conv([long, short])
    n_long, n_short = (s["input_ids"].shape[1] for s in single)
    assert n_long > n_short and batch["input_ids"].shape == (2, n_long)
    row = batch["input_ids"][1]
    assert row[:n_short].tolist() == single[1]["input_ids"][0].tolist()
    assert row[n_short:].tolist() == [2] * (n_long - n_short)
    assert batch["target_ids"][1, n_short:].tolist() == [-100] * (n_long - n_short)
    assert batch["attention_mask"][1].tolist() == [1] * n_short + [0] * (n_long - n_short)
    assert batch["input_ids"][0].tolist() == single[0]["input_ids"][0].tolist()


def test_truncation_cuts_the_text_part_only(tokenizer):
    full = ConversationTokenizer(tokenizer, max_tgt_len=1024)([CONVERSATIONS[0], CONVERSATIONS[1]])
    cut = ConversationTokenizer(tokenizer, max_tgt_len=10)([CONVERSATIONS[0], CONVERSATIONS[1]])
    prefix = cut["image_position"] + 1
    assert cut["input_ids"].shape == (2, prefix + 10)
    for key in ("input_ids", "target_ids", "attention_mask"):
        assert torch.equal(cut[key], full[key][:, : prefix + 10])


def test_explicit_bos_and_pad_ids(tokenizer):
    # Old Vicuna-v0 folders resolve both to 0; the ids must be settable rather than taken from the tokenizer.
    batch = ConversationTokenizer(tokenizer, bos_token_id=0, pad_token_id=0)([CONVERSATIONS[0], CONVERSATIONS[1]])
    assert batch["input_ids"][:, 0].tolist() == [0, 0]
    short_len = int((batch["target_ids"][1] != -100).nonzero().max()) + 1
    assert set(batch["input_ids"][1, short_len:].tolist()) == {0}


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}], "first turn"),
        ([{"from": "human", "value": "x"}, {"from": "bot", "value": "y"}], "unknown role"),
        ([{"from": "human", "value": "x"}, {"from": "gpt", "value": "  "}], "empty 'gpt' reply"),
        ([{"from": "human", "value": "x"}], "no 'gpt' reply"),
        ([], "empty"),
        ([{"from": "human"}], "mapping"),
    ],
)
def test_invalid_conversations(turns, reason, tokenizer):
    with pytest.raises(ConversationError, match=reason):
        check_conversation(turns)
    with pytest.raises(ConversationError):
        ConversationTokenizer(tokenizer)([turns])


def test_inference_prompt_matches_the_web_demo():
    assert inference_prompt([], "What is this?") == "What is this?"
    history = [("q1", "a1"), ("q2", "a2")]
    assert inference_prompt(history, "q3") == "q1\n### Assistant: a1\n### Human: q2\n### Assistant: a2\n### Human: q3"
    assert inference_text([], "Hi") == "</Img> Hi\n### Assistant:"


def test_inference_ids_tokenize_the_text_in_one_piece(tokenizer):
    conv = ConversationTokenizer(tokenizer)
    out = conv.inference_ids([("q1", "a1")], "q2")
    expected = [1, *ids(tokenizer, "### Human: <Img>"), conv.pad_token_id]
    expected += ids(tokenizer, "</Img> q1\n### Assistant: a1\n### Human: q2\n### Assistant:")
    assert out["input_ids"][0].tolist() == expected
    assert out["image_position"] == 4
