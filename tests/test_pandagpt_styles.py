"""Prompt styles: each one against token/label sequences built by hand from the format's written-out strings."""

from __future__ import annotations

import pytest
import torch

from lit_multimodal.data.base import DataError
from lit_multimodal.multimodal.pandagpt.conversation import ConversationTokenizer
from lit_multimodal.multimodal.pandagpt.styles import get_style, style_names
from lit_multimodal.multimodal.pandagpt.tiny import build_tiny_tokenizer, write_tiny_causal_lm

Q1, A1, Q2, A2 = "What is in the image?", "A small cat.", "What colour is it?", "It is black."
TURNS = [
    {"from": "human", "value": Q1},
    {"from": "gpt", "value": A1},
    {"from": "human", "value": Q2},
    {"from": "gpt", "value": A2},
]
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    base = build_tiny_tokenizer()
    return {f: write_tiny_causal_lm(root / f, f, base_tokenizer=base) for f in ("llama3", "mistral", "qwen2", "gemma")}


def load(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def ids(tokenizer, text):
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def encode(tokenizer, style, **kwargs):
    conv = ConversationTokenizer(tokenizer, prompt_style=style, **kwargs)
    batch = conv([TURNS])
    position = batch["image_position"]
    n = conv.soft_tokens
    full = batch["input_ids"][0].tolist()
    return conv, full[:position], full[position + n :], batch["target_ids"][0, position + n :].tolist(), batch


def layout(*parts):
    """``(ids, trained)`` parts → (ids, targets) as the format prescribes."""
    out_ids, out_targets = [], []
    for part, trained in parts:
        out_ids += part
        out_targets += part if trained else [-100] * len(part)
    return out_ids, out_targets


def test_registry_lists_every_style():
    assert {"vicuna_v0", "vicuna_v1.1", "llama2_chat", "llama3_instruct", "qwen2", "mistral_instruct",
            "chat_template"} <= set(style_names())  # fmt: skip
    with pytest.raises(ValueError, match="unknown prompt_style"):
        get_style("nope")


def test_vicuna_v11(folders):
    tok = load(folders["mistral"])
    _, prefix, text, targets, _ = encode(tok, "vicuna_v1.1")
    assert prefix == [tok.bos_token_id, *ids(tok, f"{VICUNA_SYSTEM} USER: <Img>")]
    eos = [tok.eos_token_id]
    expected = layout(
        (ids(tok, f"</Img>\n{Q1} ASSISTANT:"), False), (ids(tok, A1) + eos, True),
        (ids(tok, f"USER: {Q2} ASSISTANT:"), False), (ids(tok, A2) + eos, True),
    )  # fmt: skip
    assert (text, targets) == expected


def test_llama2_chat_bos_every_turn_and_mask_sees_eos(folders):
    tok = load(folders["mistral"])  # LLaMA vocabulary: pad = eos = </s>
    _, prefix, text, targets, batch = encode(tok, "llama2_chat", system_prompt="Be brief.")
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert prefix == [bos, *ids(tok, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<Img>")]
    expected = layout(
        (ids(tok, f"</Img>\n{Q1} [/INST]"), False), (ids(tok, f"{A1} ") + [eos], True),
        ([bos, *ids(tok, f"[INST] {Q2} [/INST]")], False), (ids(tok, f"{A2} ") + [eos], True),
    )  # fmt: skip
    assert (text, targets) == expected
    # pad == eos here: the EOS inside the sequence must stay visible (a mask from ids != pad would hide it)
    assert batch["attention_mask"].all()


def test_llama3_instruct(folders):
    tok = load(folders["llama3"])
    conv, prefix, text, targets, _ = encode(tok, "llama3_instruct")
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert prefix == [bos, *ids(tok, "<|start_header_id|>user<|end_header_id|>\n\n<Img>")]
    head = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    expected = layout(
        (ids(tok, f"</Img>\n{Q1}<|eot_id|>{head}"), False), (ids(tok, f"{A1}<|eot_id|>"), True),
        (ids(tok, f"<|start_header_id|>user<|end_header_id|>\n\n{Q2}<|eot_id|>{head}"), False),
        (ids(tok, f"{A2}<|eot_id|>"), True),
    )  # fmt: skip
    assert (text, targets) == expected
    assert conv.stop_ids == {tok.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>")}
    prompt = conv.inference_ids([], Q1)["input_ids"][0].tolist()
    assert prompt[len(prefix) + 1 :] == ids(tok, f"</Img>\n{Q1}<|eot_id|>{head}")


def test_qwen2_chatml_has_no_bos(folders):
    tok = load(folders["qwen2"])
    assert tok.bos_token_id is None
    conv, prefix, text, targets, _ = encode(tok, "qwen2")
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert prefix == ids(tok, f"{system}<|im_start|>user\n<Img>")
    assert None not in prefix
    expected = layout(
        (ids(tok, f"</Img>\n{Q1}<|im_end|>\n<|im_start|>assistant\n"), False), (ids(tok, f"{A1}<|im_end|>"), True),
        (ids(tok, f"\n<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n"), False),
        (ids(tok, f"{A2}<|im_end|>"), True),
    )  # fmt: skip
    assert (text, targets) == expected
    assert tok.convert_tokens_to_ids("<|im_end|>") in conv.stop_ids
    # vicuna_v0 needs a BOS this tokenizer lacks: a clear error, not a None id in the sequence
    with pytest.raises(ValueError, match="BOS"):
        ConversationTokenizer(tok, prompt_style="vicuna_v0")


def test_mistral_instruct(folders):
    tok = load(folders["mistral"])
    _, prefix, text, targets, _ = encode(tok, "mistral_instruct")
    eos = [tok.eos_token_id]
    assert prefix == [tok.bos_token_id, *ids(tok, "[INST] <Img>")]
    expected = layout(
        (ids(tok, f"</Img>\n{Q1} [/INST]"), False), (ids(tok, A1) + eos, True),
        (ids(tok, f" [INST] {Q2} [/INST]"), False), (ids(tok, A2) + eos, True),
    )  # fmt: skip
    assert (text, targets) == expected


def test_chat_template_assistant_only_labels(folders):
    tok = load(folders["gemma"])
    conv, prefix, text, targets, _ = encode(tok, "chat_template")
    assert prefix == ids(tok, "<s><start_of_turn>user\n<Img>")
    expected = layout(
        (ids(tok, f"</Img>\n{Q1}<end_of_turn>\n<start_of_turn>model\n"), False), (ids(tok, f"{A1}<end_of_turn>"), True),
        (ids(tok, f"\n<start_of_turn>user\n{Q2}<end_of_turn>\n<start_of_turn>model\n"), False),
        (ids(tok, f"{A2}<end_of_turn>"), True),
    )  # fmt: skip
    assert (text, targets) == expected
    assert tok.convert_tokens_to_ids("<end_of_turn>") in conv.stop_ids
    prompt = conv.inference_ids([(Q1, A1)], Q2)["input_ids"][0].tolist()
    assert tok.decode(prompt[len(prefix) + 1 :]).endswith("<start_of_turn>model\n")


def test_missing_chat_markers_are_a_clear_error(folders):
    with pytest.raises(ValueError, match="<\\|im_start\\|>"):
        ConversationTokenizer(load(folders["mistral"]), prompt_style="qwen2")
    with pytest.raises(ValueError, match="no chat_template"):
        ConversationTokenizer(load(folders["mistral"]), prompt_style="chat_template")


def test_n_soft_tokens_reserve_n_positions(folders):
    tok = load(folders["qwen2"])
    one = encode(tok, "qwen2")
    three = encode(tok, "qwen2", soft_tokens=3)
    assert three[1] == one[1] and three[2] == one[2]
    assert three[4]["input_ids"].shape[1] == one[4]["input_ids"].shape[1] + 2
    assert three[4]["target_ids"][0, : len(one[1]) + 3].eq(-100).all()


def test_overflow_never_cuts_inside_the_modality_span(folders):
    tok = load(folders["qwen2"])
    full = ConversationTokenizer(tok, prompt_style="qwen2")
    text, targets = full.encode(TURNS)
    marker = full.protected_length(text)
    assert marker >= 2 and "</Img>" in tok.decode(text[:marker]) and "</Img>" not in tok.decode(text[: marker - 1])
    inside = ConversationTokenizer(tok, max_tgt_len=marker - 1, prompt_style="qwen2")
    assert "inside the modality span" in inside.overflow_reason(TURNS)
    first_label = next(i for i, t in enumerate(targets) if t != -100)
    no_reply = ConversationTokenizer(tok, max_tgt_len=first_label, prompt_style="qwen2")
    assert "no reply token" in no_reply.overflow_reason(TURNS)
    cut_later = ConversationTokenizer(tok, max_tgt_len=first_label + 1, prompt_style="qwen2")
    assert cut_later.overflow_reason(TURNS) is None


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_data_module_skips_and_counts_or_names_the_record(folders, tmp_path, policy):
    import json

    from lit_multimodal.data.instructions import InstructionDataModule

    short = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Yes."}]
    long = [{"from": "human", "value": " ".join(["What is in the image?"] * 12)}, {"from": "gpt", "value": "A cat."}]
    records = [{"image_name": f"{i:03d}", "conversation": c} for i, c in enumerate([short, long, short])]
    (tmp_path / "d.json").write_text(json.dumps(records))
    data = InstructionDataModule(
        json_path=str(tmp_path / "d.json"), image_root=str(tmp_path), tokenizer=str(folders["qwen2"]),
        max_tgt_len=40, prompt_style="qwen2", check_images=False, num_workers=0, on_overflow=policy,
    )  # fmt: skip
    if policy == "error":
        with pytest.raises(DataError, match="record 1 of .*no reply token"):
            data.setup("fit")
        return
    data.setup("fit")
    assert data.skipped["too_long"] == 1 and len(data.datasets["train"]) == 2
    batch = next(iter(data.train_dataloader()))
    assert (batch["target_ids"] != -100).any(dim=1).all()
    assert torch.equal(
        batch["input_ids"][:, : batch["image_position"]],
        batch["input_ids"][:1, : batch["image_position"]].expand(2, -1),
    )
