"""Image-instruction conversations (PandaGPT and LLaVA json) for PandaGPT instruction tuning.

Two json layouts are read (a top-level list of records):

- **PandaGPT** (``pandagpt4_visual_instruction_data.json``): ``{"image_name": "000000426538[.jpg]",
  "conversation": [{"from": "human" | "gpt", "value": str}, ...]}``. As the official loader, ``.jpg`` is
  appended to a name without it and the path is ``image_root + "/" + image_name``.
- **LLaVA** (``llava_instruct_150k.json`` and similar): ``{"image": "relative/path.jpg", "conversations":
  [...]}``. The ``<image>`` placeholder is removed from every turn that holds it and that turn is stripped,
  as LLaVA's own preprocessing does; the image token's place is fixed by PandaGPT's prompt instead.

Records are validated once in :meth:`InstructionDataModule.setup`. Tokenization happens in the loader workers
(:class:`InstructionCollator`); each batch carries the padded tensors, the image paths and the record indices.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from lit_multimodal.errors import DataError, UserError
from lit_multimodal.multimodal.pandagpt.conversation import ConversationError, ConversationTokenizer, check_conversation
from lit_multimodal.training.loaders import build_loader

log = logging.getLogger(__name__)

__all__ = ["InstructionCollator", "InstructionDataModule", "detect_format", "parse_record"]

JsonFormat = Literal["auto", "pandagpt", "llava"]
IMAGE_PLACEHOLDER = "<image>"


class BadRecord(UserError):
    """One record that cannot be trained on; ``kind`` names the reason for the skip counts."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def detect_format(record: Any) -> Literal["pandagpt", "llava"]:
    """``pandagpt`` for ``image_name``/``conversation`` records, ``llava`` for ``image``/``conversations``."""
    if isinstance(record, dict):
        if "conversation" in record and "image_name" in record:
            return "pandagpt"
        if "conversations" in record:
            return "llava"
    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise DataError(
        f"cannot tell the json format from the first record (keys {keys}); expected image_name/conversation "
        "(PandaGPT) or image/conversations (LLaVA); set data.format"
    )


def parse_record(record: Any, fmt: str, image_root: str) -> tuple[str, list[dict[str, str]]]:
    """The image path and the validated conversation of one record.

    Args:
        record: one json record.
        fmt: ``pandagpt`` or ``llava``.
        image_root: folder the image names are relative to.

    Raises:
        BadRecord: with a reason.
    """
    if not isinstance(record, dict):
        raise BadRecord("malformed", f"record is a {type(record).__name__}, not an object")
    image_key, turns_key = ("image_name", "conversation") if fmt == "pandagpt" else ("image", "conversations")
    name, turns = record.get(image_key), record.get(turns_key)
    if not isinstance(name, str) or not name:
        raise BadRecord("no_image", f"record has no {image_key!r}")
    if fmt == "pandagpt":
        if not name.endswith(".jpg"):
            name += ".jpg"
        path = image_root + "/" + name
    else:
        path = os.path.join(image_root, name)
    if not isinstance(turns, list):
        raise BadRecord("malformed", f"record has no {turns_key!r} list")
    clean = []
    for turn in turns:
        if isinstance(turn, dict):
            value = turn.get("value")
            if fmt == "llava" and isinstance(value, str) and IMAGE_PLACEHOLDER in value:
                value = value.replace(IMAGE_PLACEHOLDER, "").strip()
            turn = {"from": turn.get("from"), "value": value}
        clean.append(turn)
    try:
        check_conversation(clean)
    except ConversationError as err:
        message = str(err)
        kind = (
            "first_turn_not_human"
            if message.startswith("first turn")
            else "unknown_role"
            if "unknown role" in message
            else "empty_reply"
            if "empty 'gpt' reply" in message or "no 'gpt' reply" in message
            else "malformed"
        )
        raise BadRecord(kind, message) from None
    return path, clean


class InstructionCollator:
    """Tokenizes a list of records in the loader worker.

    Args:
        tokenizer: a :class:`~lit_multimodal.multimodal.pandagpt.conversation.ConversationTokenizer`.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """``input_ids``, ``target_ids``, ``attention_mask``, ``image_position``, ``image_paths``, ``indices``."""
        batch = self.tokenizer([item["conversation"] for item in items])
        batch["image_paths"] = [item["image_path"] for item in items]
        batch["indices"] = [int(item["index"]) for item in items]
        return batch


class InstructionDataModule(LightningDataModule):
    """PandaGPT / LLaVA image-instruction json for PandaGPT training.

    Tokenizer settings left empty (``tokenizer``, ``max_tgt_len``, ``bos_token_id``, ``pad_token_id``) are
    taken from the model being trained (its ``llm_path``, ``max_tgt_len`` and special ids), so a config states
    them once.

    Args:
        json_path: the json file (a list of records).
        image_root: folder the records' image names are relative to.
        format: ``pandagpt``, ``llava`` or ``auto`` (from the first record's keys).
        tokenizer: folder of the LLM tokenizer (loaded offline); default: the model's ``llm_path``.
        max_tgt_len: cut of the text part; default: the model's.
        bos_token_id: BOS id; default: the model's, else the tokenizer's.
        pad_token_id: PAD id; default: the model's, else the tokenizer's EOS (the official ``pad = eos``).
        batch_size: per-device micro-batch size (official 7B: 2, 13B: 1).
        num_workers: loader worker processes (tokenization runs there).
        val_fraction: fraction of the records held out for validation (0: no validation, the official).
        split_seed: seed of the held-out split.
        skip_bad_records: skip unusable records (missing image, first turn not human, unknown role, empty
            reply) and log their counts once, instead of raising a ``DataError`` naming the first one.
        check_images: require every image file to exist; turn off when embeddings are precomputed and the
            images themselves are not on this machine.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory in the loaders.
        on_overflow: a record that cannot fit ``max_tgt_len`` (the cut would fall inside the modality span or
            leave no reply token) is ``skip``-ped and counted, or raises an ``error`` naming the record. Records
            that merely lose later turns are cut after the last fitting token, as the official.
        prompt_style: prompt format; default: the model's (``vicuna_v0`` without a model).
    """

    def __init__(
        self,
        json_path: str,
        image_root: str,
        format: JsonFormat = "auto",
        tokenizer: str | None = None,
        max_tgt_len: int | None = None,
        bos_token_id: int | None = None,
        pad_token_id: int | None = None,
        batch_size: int = 2,
        num_workers: int = 1,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        skip_bad_records: bool = False,
        check_images: bool = True,
        drop_last: bool = False,
        pin_memory: bool = False,
        on_overflow: Literal["skip", "error"] = "skip",
        prompt_style: str | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        for key, value, least in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise DataError(f"data.{key} is {value!r}; expected an integer >= {least}")
        self.json_path = json_path
        self.image_root = image_root
        self.format = format
        self.tokenizer_path = tokenizer
        self.max_tgt_len = max_tgt_len
        self.bos_token_id = bos_token_id
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.skip_bad_records = skip_bad_records
        self.check_images = check_images
        self.drop_last = drop_last
        self.pin_memory = pin_memory
        if on_overflow not in ("skip", "error"):
            raise ValueError(f"on_overflow must be skip or error, got {on_overflow!r}")
        self.on_overflow = on_overflow
        self.prompt_style = prompt_style
        self.datasets: dict[str, Any] = {}
        self.skipped: Counter[str] = Counter()
        self.collator: InstructionCollator | None = None

    # -- records --------------------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        """The json file's stem."""
        return Path(self.json_path).stem

    def read_records(self) -> tuple[list[int], list[str], list[list[dict[str, str]]]]:
        """Reads and validates the json: ``(record indices, image paths, conversations)`` of the usable records."""
        path = Path(self.json_path).expanduser()
        if not path.is_file():
            raise DataError(f"instruction json {path} does not exist")
        try:
            with path.open() as handle:
                records = json.load(handle)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
        if not isinstance(records, list) or not records:
            raise DataError(f"{path}: expected a non-empty JSON list of records")
        fmt = detect_format(records[0]) if self.format == "auto" else self.format
        indices, paths, conversations = [], [], []
        skipped: Counter[str] = Counter()
        first_skipped: dict[str, str] = {}
        for index, record in enumerate(records):
            try:
                image_path, turns = parse_record(record, fmt, str(self.image_root))
                if self.check_images and not os.path.isfile(image_path):
                    raise BadRecord("missing_image", f"image {image_path} does not exist")
            except BadRecord as err:
                if not self.skip_bad_records:
                    raise DataError(
                        f"record {index} of {path} ({fmt} format): {err} (set skip_bad_records: true to skip)"
                    ) from None
                skipped[err.kind] += 1
                first_skipped.setdefault(err.kind, f"record {index}: {err}")
                continue
            indices.append(index)
            paths.append(image_path)
            conversations.append(turns)
        if skipped:
            log.warning(
                "skipped %d of %d records of %s: %s (first of each: %s)",
                sum(skipped.values()),
                len(records),
                path,
                dict(skipped),
                first_skipped,
            )
        if not indices:
            raise DataError(f"{path}: no usable record ({dict(skipped)})")
        self.skipped = skipped
        return indices, paths, conversations

    def _attached_model(self) -> Any:
        trainer = getattr(self, "trainer", None)
        return getattr(trainer, "lightning_module", None) if trainer is not None else None

    def build_collator(self) -> InstructionCollator:
        """Loads the tokenizer (offline) and resolves the tokenization settings, own first, then the model's."""
        from transformers import AutoTokenizer

        model = self._attached_model()
        folder = self.tokenizer_path or getattr(model, "llm_path", None)
        if not folder:
            raise DataError("data.tokenizer is not set and no model with an llm_path is attached")
        max_tgt_len = self.max_tgt_len or getattr(model, "max_tgt_len", None) or 1024
        bos = self.bos_token_id if self.bos_token_id is not None else getattr(model, "bos_token_id", None)
        pad = self.pad_token_id if self.pad_token_id is not None else getattr(model, "pad_token_id", None)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        style = self.prompt_style or getattr(model, "prompt_style", None) or "vicuna_v0"
        extra = {
            "soft_tokens": getattr(model, "soft_tokens", 1),
            "system_prompt": getattr(model, "system_prompt", None),
        }
        return InstructionCollator(
            ConversationTokenizer(tokenizer, max_tgt_len, bos, pad, prompt_style=style, **extra)  # type: ignore[arg-type]
        )

    def drop_overflowing(self, indices: list, paths: list, conversations: list) -> tuple[list, list, list]:
        """Removes (and counts) the records that cannot fit ``max_tgt_len``, or raises naming the first one."""
        tokenizer = self.collator.tokenizer
        keep = []
        for position, turns in enumerate(conversations):
            reason = tokenizer.overflow_reason(turns)
            if reason is None:
                keep.append(position)
            elif self.on_overflow == "error":
                raise DataError(
                    f"record {indices[position]} of {self.json_path}: {reason} (on_overflow: skip skips it)"
                )
        dropped = len(conversations) - len(keep)
        if dropped:
            self.skipped["too_long"] += dropped
            log.warning("skipped %d records of %s that cannot fit max_tgt_len", dropped, self.json_path)
        if not keep:
            raise DataError(f"{self.json_path}: no record fits max_tgt_len {tokenizer.max_tgt_len}")
        return [indices[i] for i in keep], [paths[i] for i in keep], [conversations[i] for i in keep]

    def setup(self, stage: str | None = None) -> None:
        """Reads the json, splits off the held-out records and builds the collator."""
        import datasets

        if self.datasets:
            return
        indices, paths, conversations = self.read_records()
        if self.collator is None:
            self.collator = self.build_collator()
        indices, paths, conversations = self.drop_overflowing(indices, paths, conversations)
        # Arrow-backed rows: loader workers share them instead of copying 160k Python dicts each.
        table = datasets.Dataset.from_dict(
            {"index": indices, "image_path": paths, "conversation": conversations}, split="train"
        )
        n_val = int(round(len(table) * self.val_fraction))
        if n_val > 0:
            order = np.random.default_rng(self.split_seed).permutation(len(table))
            self.datasets["val"] = table.select(sorted(order[:n_val].tolist()))
            self.datasets["train"] = table.select(sorted(order[n_val:].tolist()))
        else:
            self.datasets["train"] = table

    # -- loaders --------------------------------------------------------------------------------
    def _loader(self, role: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            self.setup()
        # The shuffled loader keeps its place in checkpoints: a mid-epoch resume continues the epoch's order.
        return build_loader(
            self.datasets[role],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=self.collator,
            drop_last=self.drop_last and role == "train",
            resumable=True,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training loader (order fixed by the run's seed)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Held-out loader; an empty list (no validation) when ``val_fraction`` is 0."""
        if not self.datasets:
            self.setup()
        return self._loader("val", shuffle=False) if "val" in self.datasets else []

    def has_split(self, role: str) -> bool:
        """Training always; validation with a held-out fraction; never test."""
        return role == "train" or (role == "val" and self.val_fraction > 0)
