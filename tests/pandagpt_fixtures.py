"""Test-only helpers for PandaGPT: a deterministic fake embedder and tiny instruction datasets on disk."""

from __future__ import annotations

import hashlib
import json
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

EMBED_DIM = 1024


class HashEmbedder:
    """Deterministic unit-norm embeddings derived from each path string (a stand-in for ImageBind).

    Args:
        dim: embedding width.
    """

    def __init__(self, dim: int = EMBED_DIM) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed(self, modality: str, paths: list[str]) -> torch.Tensor:
        self.calls.append(list(paths))
        rows = []
        for path in paths:
            seed = int.from_bytes(hashlib.sha256(f"{modality}:{path}".encode()).digest()[:8], "little")
            vector = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
            rows.append(vector / vector.norm())
        return torch.stack(rows)


CONVERSATIONS = [
    [
        {"from": "human", "value": "What is in the image?"},
        {"from": "gpt", "value": "A small cat sits on a red mat."},
        {"from": "human", "value": "What colour is the cat?"},
        {"from": "gpt", "value": "The cat is black and white."},
    ],
    [
        {"from": "human", "value": "Describe this picture in detail."},
        {"from": "gpt", "value": "Two dogs run across a green field under a blue sky."},
    ],
    [
        {"from": "human", "value": "How many people are there in the image?"},
        {"from": "gpt", "value": "There are three people sitting on a bench."},
        {"from": "human", "value": "What are they eating?"},
        {"from": "gpt", "value": "They are eating sandwiches."},
    ],
    [
        {"from": "human", "value": "Can you tell me what the man is doing?"},
        {"from": "gpt", "value": "The man is riding a bicycle down a busy street."},
    ],
]


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((37 * seed) % 256, (91 * seed) % 256, (53 * seed) % 256)
    Image.new("RGB", (8, 8), colour).save(path, format="JPEG")


def write_pandagpt_json(root: Path, n: int = 8, extra: list[dict] | None = None) -> tuple[Path, Path]:
    """``root/data.json`` in the PandaGPT layout (names without ``.jpg``, as the released json) and ``root/images``."""
    images = root / "images"
    records = []
    for index in range(n):
        name = f"{index:012d}"
        write_image(images / f"{name}.jpg", index)
        records.append({"image_name": name, "conversation": CONVERSATIONS[index % len(CONVERSATIONS)]})
    records += extra or []
    path = root / "data.json"
    path.write_text(json.dumps(records))
    return path, images


def write_llava_json(root: Path, n: int = 4) -> tuple[Path, Path]:
    """``root/llava.json`` in the LLaVA layout with ``<image>`` placeholders, and ``root/coco`` images."""
    images = root / "coco"
    records = []
    for index in range(n):
        name = f"train2017/{index:012d}.jpg"
        write_image(images / name, index)
        turns = [dict(turn) for turn in CONVERSATIONS[index % len(CONVERSATIONS)]]
        first = turns[0]["value"]
        turns[0]["value"] = f"<image>\n{first}" if index % 2 == 0 else f"{first}\n<image>"
        records.append({"id": str(index), "image": name, "conversations": turns})
    path = root / "llava.json"
    path.write_text(json.dumps(records))
    return path, images


def tiny_pandagpt(root: Path, seed: int = 1):
    """A tiny LLaMA written under ``root / "llm"`` and a PandaGPT on it whose LoRA B is non-zero (LoRA matters).

    Returns:
        ``(llm folder, model in eval mode)``.
    """
    from lit_multimodal.multimodal.pandagpt.module import PandaGPT
    from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama

    llm = write_tiny_llama(root / "llm")
    torch.manual_seed(seed)
    model = PandaGPT(llm_path=str(llm), lora_r=4, lora_alpha=8, lora_dropout=0.0).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.05)
    return llm, model


def write_chat_fit_config(root: Path, llm: Path, encoder_init: str = "preset: tiny") -> Path:
    """A fit config naming the tiny LLaMA (LoRA r 4, alpha 8) and a tiny ImageBind embedder, for chat/export."""
    init = "".join(f"        {line}\n" for line in encoder_init.splitlines())
    config = root / "fit.yaml"
    config.write_text(
        "model:\n  class_path: lit_multimodal.multimodal.pandagpt.module.PandaGPT\n  init_args:\n"
        f"    llm_path: {llm}\n    lora_r: 4\n    lora_alpha: 8\n    embedder:\n"
        "      class_path: lit_multimodal.multimodal.imagebind.ImageBindEncoder\n"
        f"      init_args:\n{init}"
    )
    return config


def write_wav(path: Path, seconds: float = 2.0, rate: int = 16000, frequency: float = 440.0) -> Path:
    """A mono 16-bit PCM sine tone, written with the standard library's ``wave`` module."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path
