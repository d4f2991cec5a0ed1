r"""A tiny LLaMA-architecture model folder with a real tokenizer, loadable offline by transformers.

:func:`write_tiny_llama` writes ``config.json``, ``model.safetensors``, ``generation_config.json``,
``tokenizer.json`` and ``tokenizer_config.json``: the same files a converted LLaMA/Vicuna folder has, so the
code paths that load a 7B model (``AutoModelForCausalLM`` / ``AutoTokenizer`` with ``local_files_only``) are
exercised as they are. The tokenizer is a byte-fallback BPE in the LLaMA layout: ``<unk>`` 0, ``<s>`` 1,
``</s>`` 2, the 256 byte pieces ``<0x00>`` … ``<0xFF>`` at 3 … 258 (so ``"\n"`` is ``<0x0A>`` = 13, as in
LLaMA), then pieces learned from a small built-in English text that contains PandaGPT's prompt markers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["TINY_TEXT", "build_tiny_tokenizer", "write_tiny_llama"]

UNK, BOS, EOS = "<unk>", "<s>", "</s>"

TINY_TEXT = """\
### Human: <Img> </Img> What is in the image?
### Assistant: A small cat sits on a red mat next to the window.
### Human: What colour is the cat?
### Assistant: The cat is black and white, and it looks at the camera.
### Human: <Img> </Img> Describe this picture in detail.
### Assistant: Two dogs run across a green field under a blue sky. One dog carries a stick in its mouth.
### Human: Where could this photo have been taken?
### Assistant: It was probably taken in a park on a sunny day in the summer.
### Human: <Img> </Img> Can you tell me what the man is doing?
### Assistant: The man is riding a bicycle down a busy street in the city.
### Human: Is it safe?
### Assistant: He wears a helmet, so he is being careful, but the traffic looks heavy.
### Human: <Img> </Img> How many people are there in the image?
### Assistant: There are three people: a woman, a child and an old man sitting on a bench.
### Human: What are they eating?
### Assistant: They are eating sandwiches and drinking tea from a large bottle.
The quick brown fox jumps over the lazy dog. A picture is worth a thousand words.
People often describe what they see: the shape, the colour, the size and the place of things.
"""


def _byte_pieces() -> list[str]:
    return [f"<0x{value:02X}>" for value in range(256)]


def build_tiny_tokenizer(text: str = TINY_TEXT, vocab_size: int = 600):
    """Trains a LLaMA-layout byte-fallback BPE on ``text``.

    Args:
        text: training text; every line is one training sequence (newlines themselves are left to the
            byte fallback, as in the LLaMA vocabulary).
        vocab_size: size of the learned part before the special and byte pieces are put in front.

    Returns:
        A ``tokenizers.Tokenizer`` with a Metaspace pre-tokenizer (``prepend_scheme="first"``, no split: what
        transformers 5.x builds for ``LlamaTokenizer`` with ``legacy=False``), byte fallback and a
        ``<s> $A`` post-processor.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    # Learned on words (split=True) so that no merge spans a word boundary, as SentencePiece pieces do not;
    # the final tokenizer then runs unsplit, which gives the same pieces.
    learner = Tokenizer(models.BPE(unk_token=UNK))
    learner.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False)
    learner.train_from_iterator([line for line in text.splitlines() if line.strip()], trainer)
    learned = json.loads(learner.to_str())["model"]
    fixed = [UNK, BOS, EOS, *_byte_pieces()]
    vocab = {piece: index for index, piece in enumerate(fixed)}
    for piece, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in learned["merges"]]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in (UNK, BOS, EOS)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 1)]
    )
    return tokenizer


def write_tiny_llama(
    folder: str | Path,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 128,
    vocab_size: int = 600,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Writes a randomly initialised tiny ``LlamaForCausalLM`` and its tokenizer into ``folder``.

    Args:
        folder: output folder (created).
        hidden_size: model width.
        num_hidden_layers: decoder layers.
        num_attention_heads: attention heads (also the key/value heads).
        intermediate_size: MLP width.
        vocab_size: learned BPE pieces requested; the model's vocabulary is the tokenizer's final size.
        seed: seed of the weight initialisation.
        dtype: dtype of the saved weights.

    Returns:
        The folder, loadable with ``AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)`` and
        ``AutoTokenizer.from_pretrained(folder, local_files_only=True)``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(vocab_size=vocab_size)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "add_prefix_space": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "padding_side": "right",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": UNK}, indent=2)
    )
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    return folder
