"""InstructionDataModule: PandaGPT and LLaVA json, bad records, held-out split, collation in the loader."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from lit_multimodal.data.base import DataError
from lit_multimodal.multimodal.pandagpt.instructions import InstructionDataModule
from lit_multimodal.quickstart.tiny_llm import write_tiny_llama
from tests.pandagpt_fixtures import CONVERSATIONS, write_image, write_llava_json, write_pandagpt_json


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


def data_module(json_path, image_root, llm_dir, **kwargs) -> InstructionDataModule:
    kwargs = {"batch_size": 3, "num_workers": 0, "tokenizer": str(llm_dir), "max_tgt_len": 512, **kwargs}
    return InstructionDataModule(json_path=str(json_path), image_root=str(image_root), **kwargs)


def test_pandagpt_json_batches_carry_tensors_paths_and_indices(tmp_path, llm_dir):
    from transformers import AutoTokenizer

    json_path, images = write_pandagpt_json(tmp_path, n=5)
    dm = data_module(json_path, images, llm_dir)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 5 and "val" not in dm.datasets
    assert dm.val_dataloader() == []
    batch = next(iter(dm._loader("train", shuffle=False)))
    assert batch["indices"] == [0, 1, 2]
    # The official path rule: image_root + "/" + name, ".jpg" appended to names without it.
    assert batch["image_paths"] == [f"{images}/{i:012d}.jpg" for i in range(3)]
    assert batch["input_ids"].shape == batch["target_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[0] == 3 and batch["image_position"] == 4

    # Row 1 is conversation 1 on its own: its first reply's ids (tokenized alone) are trained targets.
    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir), local_files_only=True)
    reply = tokenizer(CONVERSATIONS[1][1]["value"] + "\n###", add_special_tokens=False).input_ids
    trained = batch["target_ids"][1][batch["target_ids"][1] != -100].tolist()
    assert trained == reply


def test_llava_json_drops_the_image_placeholder(tmp_path, llm_dir):
    json_path, images = write_llava_json(tmp_path, n=4)
    dm = data_module(json_path, images, llm_dir, format="auto")
    dm.setup("fit")
    table = dm.datasets["train"]
    assert table[0]["image_path"] == str(images / "train2017" / "000000000000.jpg")
    for row, index in zip(table, range(4), strict=True):
        first = row["conversation"][0]["value"]
        assert "<image>" not in first and first == CONVERSATIONS[index % len(CONVERSATIONS)][0]["value"]
        assert row["conversation"][1:] == CONVERSATIONS[index % len(CONVERSATIONS)][1:]


def test_format_detection_and_explicit_mismatch(tmp_path, llm_dir):
    json_path, images = write_llava_json(tmp_path, n=2)
    with pytest.raises(DataError, match=r"record 0 of .*llava\.json"):
        data_module(json_path, images, llm_dir, format="pandagpt").setup("fit")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"picture": "a.jpg", "dialogue": []}]))
    with pytest.raises(DataError, match="cannot tell the json format"):
        data_module(odd, images, llm_dir).setup("fit")


BAD = {
    "missing_image": {"image_name": "does_not_exist", "conversation": CONVERSATIONS[1]},
    "first_turn_not_human": {"image_name": "000000000000", "conversation": CONVERSATIONS[1][::-1]},
    "unknown_role": {
        "image_name": "000000000000",
        "conversation": [CONVERSATIONS[1][0], {"from": "assistant", "value": "hello"}],
    },
    "empty_reply": {"image_name": "000000000000", "conversation": [CONVERSATIONS[1][0], {"from": "gpt", "value": ""}]},
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_record_error_names_index_and_file(tmp_path, llm_dir, kind):
    json_path, images = write_pandagpt_json(tmp_path, n=3, extra=[BAD[kind]])
    with pytest.raises(DataError) as info:
        data_module(json_path, images, llm_dir).setup("fit")
    message = str(info.value)
    assert "record 3 of" in message and str(json_path) in message and "skip_bad_records" in message


def test_skip_bad_records_counts_and_logs_once(tmp_path, llm_dir, caplog):
    json_path, images = write_pandagpt_json(tmp_path, n=3, extra=[BAD[k] for k in sorted(BAD)] + [BAD["unknown_role"]])
    dm = data_module(json_path, images, llm_dir, skip_bad_records=True)
    with caplog.at_level(logging.WARNING, logger="lit_multimodal.multimodal.pandagpt.instructions"):
        dm.setup("fit")
    assert dict(dm.skipped) == {"missing_image": 1, "first_turn_not_human": 1, "unknown_role": 2, "empty_reply": 1}
    assert list(dm.datasets["train"]["index"]) == [0, 1, 2]
    warnings = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 5 of 8 records" in warnings[0].getMessage()


def test_missing_images_allowed_when_not_checked(tmp_path, llm_dir):
    json_path, images = write_pandagpt_json(tmp_path, n=2, extra=[BAD["missing_image"]])
    dm = data_module(json_path, images, llm_dir, check_images=False)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3


def test_held_out_split_is_seeded_and_disjoint(tmp_path, llm_dir):
    json_path, images = write_pandagpt_json(tmp_path, n=8)

    def split(seed):
        dm = data_module(json_path, images, llm_dir, val_fraction=0.25, split_seed=seed)
        dm.setup("fit")
        return list(dm.datasets["train"]["index"]), list(dm.datasets["val"]["index"])

    train, val = split(0)
    assert len(val) == 2 and sorted(train + val) == list(range(8))
    assert split(0) == (train, val)
    assert any(split(seed)[1] != val for seed in (1, 2, 3))


def test_loader_workers_collate(tmp_path, llm_dir):
    json_path, images = write_pandagpt_json(tmp_path, n=4)
    dm = data_module(json_path, images, llm_dir, num_workers=1, batch_size=2, val_fraction=0.5)
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    assert len(batches) == 1 and isinstance(batches[0]["input_ids"], torch.Tensor)
    assert sorted(batches[0]["indices"]) == sorted(list(dm.datasets["val"]["index"]))


def test_tokenizer_must_come_from_somewhere(tmp_path):
    json_path, images = write_pandagpt_json(tmp_path, n=1)
    dm = InstructionDataModule(json_path=str(json_path), image_root=str(images), num_workers=0)
    with pytest.raises(DataError, match="data.tokenizer is not set"):
        dm.setup("fit")


def test_missing_json(tmp_path, llm_dir):
    write_image(tmp_path / "x.jpg", 0)
    with pytest.raises(DataError, match="does not exist"):
        data_module(tmp_path / "nope.json", tmp_path, llm_dir).setup("fit")
