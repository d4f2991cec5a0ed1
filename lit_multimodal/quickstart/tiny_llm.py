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


#: Per family: transformers config class, special tokens added after the LLaMA-layout vocabulary, BOS/EOS/PAD
#: token strings (None: the family has none) and the tokenizer's chat template (None: no template).
FAMILIES: dict[str, dict] = {
    "llama3": {
        "config": "LlamaConfig",
        "added": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "bos": "<|begin_of_text|>",
        "eos": "<|end_of_text|>",
        "pad": None,
    },
    "mistral": {"config": "MistralConfig", "added": [], "bos": BOS, "eos": EOS, "pad": None},
    "qwen2": {
        "config": "Qwen2Config",
        "added": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "byte_level": True,
    },
    "gemma": {
        "config": "GemmaConfig",
        "added": ["<start_of_turn>", "<end_of_turn>", "<pad>"],
        "bos": BOS,
        "eos": "<end_of_turn>",
        "pad": "<pad>",
        "chat_template": (
            "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
            "else message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
            "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
        ),
    },
    "phi3": {
        "config": "Phi3Config",
        "added": ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"],
        "bos": BOS,
        "eos": "<|end|>",
        "pad": "<|endoftext|>",
        "chat_template": (
            "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
        ),
    },
}


def build_tiny_byte_level_tokenizer(text: str = TINY_TEXT, vocab_size: int = 600):
    """A GPT-2/Qwen-style byte-level BPE (no unknown token, no word-start marker) trained on ``text``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer)
    return tokenizer


def write_tiny_causal_lm(
    folder: str | Path,
    family: str,
    hidden_size: int = 32,
    num_hidden_layers: int = 1,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 64,
    seed: int = 0,
    base_tokenizer=None,
) -> Path:
    """Writes a random-weight tiny model of another architecture family with its special tokens.

    The families (:data:`FAMILIES`) reproduce the traps of their real tokenizers: LLaMA-3 headers and
    ``<|eot_id|>``, Qwen2 ChatML on a byte-level BPE without BOS and with a separate PAD, Gemma turn markers with
    a chat template, Phi-3's fused ``qkv_proj`` with its template; Mistral uses the LLaMA vocabulary with
    grouped-query attention.

    Args:
        folder: output folder (created).
        family: ``llama3``, ``mistral``, ``qwen2``, ``gemma`` or ``phi3``.
        hidden_size: model width.
        num_hidden_layers: decoder layers.
        num_attention_heads: attention heads.
        num_key_value_heads: key/value heads (grouped-query attention when fewer than the heads).
        intermediate_size: MLP width.
        seed: weight initialisation seed.
        base_tokenizer: a tokenizer from :func:`build_tiny_tokenizer` to start from (saves the BPE training).
    """
    import transformers
    from tokenizers import AddedToken, Tokenizer, processors

    spec = FAMILIES[family]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.get("byte_level"):
        base = build_tiny_byte_level_tokenizer()
    else:
        base = base_tokenizer or build_tiny_tokenizer()
    tokenizer = Tokenizer.from_str(base.to_str())
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in spec["added"]])
    bos = spec["bos"]
    if bos is None:
        tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])
    else:
        bos_id = tokenizer.token_to_id(bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    tokenizer.save(str(folder / "tokenizer.json"))
    config_json = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": spec["eos"],
        "pad_token": spec["pad"],
        "unk_token": None if spec.get("byte_level") else UNK,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "padding_side": "right",
    }
    if spec.get("chat_template"):
        config_json["chat_template"] = spec["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config_json, indent=2))

    def token_id(token: str | None) -> int | None:
        return None if token is None else tokenizer.token_to_id(token)

    kwargs = {
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "max_position_embeddings": 512,
        "bos_token_id": token_id(bos),
        "eos_token_id": token_id(spec["eos"]),
        "pad_token_id": token_id(spec["pad"]),
    }
    if family == "gemma":
        kwargs["head_dim"] = hidden_size // num_attention_heads
    config = getattr(transformers, spec["config"])(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
