r"""Chatting with a PandaGPT model: any subset of image, video, audio, thermal, depth and IMU inputs.

The prompt, the history and the way several modalities become one soft token follow the official web demo:

- Each given modality is embedded by ImageBind (PandaGPT's variant: audio without the ×20 logit scale; thermal
  keeps its ×10) and projected; the projections are **summed** into one token, ``Σ_i (W e_i + b)`` (the bias
  is added once per modality, as the official).
- The sequence is ``<s>### Human: <Img>[token]</Img> {prompt}\n### Assistant:`` where ``prompt`` carries the
  history (``"{q}\n### Assistant: {a}\n###"``, later turns with a leading ``" Human: "``).
- Generation stops when the text reaches ``###`` (the official stops on the ``##`` token and drops ``\n##``);
  the answer is the text before it.
- Other prompt styles (``model.prompt_style``) bring their own layout and stop tokens (EOS, ``<|eot_id|>``, ...).
- Bytes that do not form valid UTF-8 (byte-fallback tokens of a half-finished or invalid character) are never
  shown: a partial character is held back until it completes, invalid ones are dropped.

Depth and IMU are not wired in the official PandaGPT; here they are summed the same way (an extension).
:class:`PandaGPTChat` holds the logic so that other front-ends (e.g. a web demo) can reuse it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.conversation import ConversationTokenizer
from lit_multimodal.multimodal.pandagpt.decoding import Detokenizer, cache_keyword, hold_back_stop_prefix, pick_token
from lit_multimodal.multimodal.pandagpt.splice import embed_with_soft_tokens

__all__ = ["EMERGENT_NOTICE", "MODALITY_ORDER", "ChatInputError", "PandaGPTChat", "chat"]

#: The official encoding order (image, audio, video, thermal), then the two modalities the official does not wire.
MODALITY_ORDER = ("image", "audio", "video", "thermal", "depth", "imu")
STOP_TEXT = "###"
EMERGENT_NOTICE = (
    "note: no image or video given; the answer relies on emergent cross-modal transfer "
    "(PandaGPT was trained on image-text pairs only)"
)


class ChatInputError(InputError):
    """Chat input that cannot be used (a missing file, no input at all); the message names it."""


def _as_list(files: str | Sequence[str] | None) -> list[str]:
    if files is None:
        return []
    return [str(files)] if isinstance(files, str | Path) else [str(f) for f in files]


def needs_emergent_notice(modalities: Sequence[str]) -> bool:
    """True when none of the inputs is an image or a video (the only modalities seen in training)."""
    return not any(name in ("image", "video") for name in modalities)


class PandaGPTChat:
    """Encodes inputs of any modality into PandaGPT's soft token and streams answers.

    Args:
        model: a :class:`~lit_multimodal.multimodal.pandagpt.module.PandaGPT` with its delta loaded.
        encoder: an ImageBind encoder (``encode({"image": [...], ...})``); use PandaGPT's audio variant
            (``config={"pandagpt_skip_audio_scale": True}``).
        tokenizer: the LLM's tokenizer; default: loaded from the model's ``llm_path``.
    """

    def __init__(self, model: Any, encoder: Any, tokenizer: Any | None = None) -> None:
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model.llm_path, local_files_only=True)
        self.model = model.eval()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.generated_tokens = 0
        if hasattr(model, "conversation_tokenizer"):
            self.conversation = model.conversation_tokenizer(tokenizer, max_tgt_len=10**9)
        else:
            self.conversation = ConversationTokenizer(
                tokenizer, max_tgt_len=10**9, bos_token_id=model.bos_token_id, pad_token_id=model.pad_token_id
            )
        self.soft_tokens = int(getattr(model, "soft_tokens", 1))
        #: decoding when a caller does not say: the model's ``decoding`` (``sample`` is the official)
        self.default_do_sample = getattr(model, "decoding", "sample") != "greedy"

    @classmethod
    def from_files(
        cls,
        ckpt: str | None,
        config: str | Sequence[str] | Any = None,
        imagebind_checkpoint: str | None = None,
        llm_path: str | None = None,
        dtype: str | None = None,
        device: str = "cpu",
    ) -> PandaGPTChat:
        """A chat from files: the model, its delta, and ImageBind (PandaGPT's audio variant).

        The model comes from the fit config and/or the checkpoint's hyper-parameters; ImageBind from
        ``imagebind_checkpoint`` or the config's ``model.init_args.embedder`` (its ``preset`` and ``checkpoint``).

        Args:
            ckpt: delta ``pytorch_model.pt``, Lightning ``last.ckpt`` or DeepSpeed folder; None keeps the
                untrained LoRA and projection of a fresh model (smoke tests and demos without weights).
            config: the ``lit-mm fit`` config: a YAML path, the fit arguments (``--config`` files and overrides) or
                a parsed fit namespace, read as ``lit-mm fit`` reads it.
            imagebind_checkpoint: ImageBind weights (``imagebind_huge.pth``).
            llm_path: base LLM folder (overrides the config's).
            dtype: LLM dtype override.
            device: where both models run.
        """
        from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
        from lit_multimodal.multimodal.pandagpt.export import (
            build_pandagpt,
            load_delta,
            model_init_args,
            read_checkpoint,
            read_model_config,
        )

        fit = read_model_config(config)  # parsed once for the model and the embedder
        hparams = read_checkpoint(ckpt)[1] if ckpt else {}
        model = build_pandagpt(fit, hparams, llm_path, dtype)
        if ckpt:
            load_delta(model, ckpt)
        model.to(device)
        embedder = model_init_args(fit).get("embedder") or {}
        init = dict(embedder.get("init_args") or {})
        checkpoint = imagebind_checkpoint or init.get("checkpoint")
        preset = init.get("preset", "huge")
        if preset == "huge" and not checkpoint:
            raise ChatInputError("no ImageBind weights: give --imagebind_checkpoint (imagebind_huge.pth)")
        if checkpoint and not Path(checkpoint).expanduser().is_file():
            raise ChatInputError(f"ImageBind checkpoint {checkpoint} does not exist")
        encoder = ImageBindEncoder(
            checkpoint=checkpoint,
            preset=preset,
            config={**dict(init.get("config") or {}), "pandagpt_skip_audio_scale": True},
            device=device,
            cache_dir=None,
            progress=False,
        )
        return cls(model, encoder)

    @property
    def device(self) -> torch.device:
        """The model's device."""
        return next(self.model.llama_proj.parameters()).device

    def encode_inputs(self, files_by_modality: Mapping[str, str | Sequence[str] | None]) -> tuple[torch.Tensor, dict]:
        """One soft token from every given input: ``Σ llama_proj(e_i)`` over modalities (and files).

        Args:
            files_by_modality: ``image``, ``video``, ``audio``, ``thermal``, ``depth`` or ``imu`` → a path or paths.

        Returns:
            ``(token, timings)``: the ``(1, hidden)`` token and the seconds spent per modality.

        Raises:
            ChatInputError: no input, a missing file or an unknown modality.
        """
        unknown = sorted(set(files_by_modality) - set(MODALITY_ORDER))
        if unknown:
            raise ChatInputError(f"unknown modality {unknown}; expected some of {MODALITY_ORDER}")
        given = {name: _as_list(files_by_modality.get(name)) for name in MODALITY_ORDER}
        given = {name: files for name, files in given.items() if files}
        if not given:
            raise ChatInputError("no input given; pass at least one of --image --video --audio --thermal --depth --imu")
        for name, files in given.items():
            for file in files:
                if not Path(file).is_file():
                    raise ChatInputError(f"{file}: {name} file does not exist")
        timings: dict[str, float] = {}
        projected = []
        proj = self.model.llama_proj
        project = getattr(self.model, "project", None)
        for name, files in given.items():
            start = time.perf_counter()
            embeds = self.encoder.encode({name: files})[name].to(device=self.device)
            with torch.no_grad():
                out = project(embeds) if project is not None else proj(embeds.to(proj.weight.dtype)).unsqueeze(1)
            projected.append(out)
            timings[name] = time.perf_counter() - start
        timings["total"] = sum(timings.values())
        # (files, n, hidden) summed over files and modalities → (n, hidden); (1, hidden) for one soft token
        return torch.cat(projected, dim=0).sum(dim=0), timings

    def prompt_embeds(
        self, history: Sequence[tuple[str, str]], message: str, token: torch.Tensor, system: str | None = None
    ) -> torch.Tensor:
        """``(1, L, hidden)`` inputs: BOS, ``### Human: <Img>``, the soft token(s), then the prompt text.

        The splice is training's (:func:`~lit_multimodal.multimodal.pandagpt.splice.embed_with_soft_tokens`).
        """
        batch = (
            self.conversation.inference_ids(history, message, system)
            if system
            else (self.conversation.inference_ids(history, message))
        )
        self.prompt_tokens = int(batch["input_ids"].shape[1])
        ids = batch["input_ids"].to(self.device)
        soft = token.reshape(1, self.soft_tokens, -1)
        return embed_with_soft_tokens(self.model.llama_model, ids, soft, int(batch["image_position"]))

    @torch.no_grad()
    def generate(
        self,
        history: Sequence[tuple[str, str]],
        message: str,
        embedding: torch.Tensor,
        max_new_tokens: int = 256,
        top_p: float = 0.01,
        temperature: float = 1.0,
        do_sample: bool | None = None,
        seed: int | None = 0,
        system: str | None = None,
    ) -> Iterator[str]:
        """Streams the answer in pieces; their concatenation is the answer (text before the stop, stripped).

        :attr:`finish_reason` is ``stop`` or ``length`` afterwards.

        Args:
            history: earlier ``(question, answer)`` pairs.
            message: the new user message.
            embedding: the soft token from :meth:`encode_inputs`.
            max_new_tokens: most tokens generated (the demo's "Maximum length", 256).
            top_p: nucleus mass (the demo's 0.01, nearly greedy).
            temperature: softmax temperature.
            do_sample: sample (the official); False: greedy; None: the model's ``decoding``.
            seed: seed of the sampler (None: unseeded).
            system: system prompt replacing the style's (the server passes a request's system message).
        """
        if do_sample is None:
            do_sample = self.default_do_sample
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if do_sample and (temperature <= 0 or not 0 < top_p <= 1):
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        llm = self.model.llama_model
        stop_ids = set(getattr(self.conversation, "stop_ids", {self.tokenizer.eos_token_id})) - {None}
        stop_strings = tuple(getattr(self.conversation, "stop_strings", (STOP_TEXT,)))
        cache_key = cache_keyword(llm)
        out = llm(inputs_embeds=self.prompt_embeds(history, message, embedding, system), use_cache=True)
        past = getattr(out, cache_key)
        tokens: list[int] = []
        emitted = ""
        self.generated_tokens = 0  # tokens of the answer in progress (read by the web demo for tokens/s)
        self.finish_reason = "length"
        detokenizer = Detokenizer(self.tokenizer)
        for _ in range(max_new_tokens):
            logits = out.logits[0, -1].float().cpu()
            next_id = pick_token(logits, do_sample, top_p, temperature, generator)
            if next_id in stop_ids:
                self.finish_reason = "stop"
                break
            tokens.append(next_id)
            self.generated_tokens = len(tokens)
            text = detokenizer.add(next_id)
            stops = [text.find(stop) for stop in stop_strings if stop in text]
            if stops:
                self.finish_reason = "stop"
                final = text[: min(stops)].rstrip()
                if final.startswith(emitted) and len(final) > len(emitted):
                    yield final[len(emitted) :]
                return
            # Hold back the start of a stop string and trailing spaces, so that what is sent stays a prefix.
            safe = hold_back_stop_prefix(text, stop_strings).rstrip()
            if safe.startswith(emitted) and len(safe) > len(emitted):
                yield safe[len(emitted) :]
                emitted = safe
            ids = torch.tensor([[next_id]], device=self.device)
            out = llm(input_ids=ids, use_cache=True, **{cache_key: past})
            past = getattr(out, cache_key)
        text = detokenizer.text.rstrip()
        if text.startswith(emitted) and len(text) > len(emitted):
            yield text[len(emitted) :]

    def answer(self, history: Sequence[tuple[str, str]], message: str, embedding: torch.Tensor, **sampling) -> str:
        """The whole answer of :meth:`generate`."""
        return "".join(self.generate(history, message, embedding, **sampling))


def chat(
    ckpt: str,
    fit_config: str | list[str] | None = None,
    image: str | None = None,
    audio: str | None = None,
    video: str | None = None,
    thermal: str | None = None,
    depth: str | None = None,
    imu: str | None = None,
    prompt: str | None = None,
    imagebind_checkpoint: str | None = None,
    llm_path: str | None = None,
    max_new_tokens: int = 256,
    top_p: float = 0.01,
    temperature: float = 1.0,
    do_sample: bool | None = None,
    greedy: bool = False,
    seed: int = 0,
    dtype: str | None = None,
    device: str = "cpu",
    batch: str | None = None,
    out: str | None = None,
) -> None:
    """Chats with a PandaGPT model about image/video/audio/thermal/depth/IMU inputs.

    With ``--prompt`` it answers once; without, it reads one message per line from stdin until an empty line
    or EOF and keeps the conversation history (the official demo's format). The inputs of all given
    modalities are summed into one soft token, as the official. With ``--batch questions.jsonl --out
    answers.jsonl`` it answers every record of the file (see :func:`~lit_multimodal.multimodal.pandagpt.batch.
    run_batch`), skipping records already in ``--out``.

    Args:
        ckpt: the delta ``pytorch_model.pt``, a training ``last.ckpt`` or a DeepSpeed checkpoint folder.
        fit_config: the ``lit-mm fit`` config the model was trained with (base LLM, LoRA settings, ImageBind): a
            YAML path or the fit arguments; on the command line ``--config a.yaml [--config b.yaml]
            [--model.init_args.x y]``, read exactly as ``lit-mm fit`` reads them.
        image: image file.
        audio: audio file (wav).
        video: video file.
        thermal: thermal image.
        depth: depth image (not wired in the official PandaGPT).
        imu: IMU recording ``.npy`` (not wired in the official PandaGPT).
        prompt: the question; leave empty for an interactive chat on stdin.
        imagebind_checkpoint: ImageBind weights; default: the config's embedder checkpoint.
        llm_path: base LLM folder; overrides the config's.
        max_new_tokens: most tokens per answer.
        top_p: nucleus sampling mass (the official demo's 0.01).
        temperature: sampling temperature.
        do_sample: sample (the official); false: greedy; default: the config's ``model.decoding``.
        greedy: greedy decoding (same as ``--do_sample false``).
        seed: sampling seed.
        dtype: LLM dtype override (``float32``, ``bfloat16``, ``float16``).
        device: ``cpu`` or ``cuda``.
        batch: a JSONL file of questions (``{"id", "prompt", "image": path, "audio": path, ...}`` per line).
        out: the JSONL file the batch answers go to (appended; records already there are skipped).
    """
    files = {"image": image, "audio": audio, "video": video, "thermal": thermal, "depth": depth, "imu": imu}
    files = {name: path for name, path in files.items() if path}
    if batch is not None:
        if not out:
            raise ChatInputError("--batch needs --out answers.jsonl")
        if not Path(batch).is_file():
            raise ChatInputError(f"batch file {batch} does not exist")
    else:
        for name, path in files.items():  # before the model loads: a typo should not cost a minute
            if not Path(path).is_file():
                raise ChatInputError(f"{path}: {name} file does not exist")
    engine = PandaGPTChat.from_files(ckpt, fit_config, imagebind_checkpoint, llm_path, dtype, device)
    sampling = {
        "max_new_tokens": max_new_tokens,
        "top_p": top_p,
        "temperature": temperature,
        "do_sample": False if greedy else do_sample,
        "seed": seed,
    }
    if batch is not None:
        from lit_multimodal.multimodal.pandagpt.batch import run_batch

        summary = run_batch(engine, batch, str(out), sampling)
        print(f"answered {summary['answered']}, skipped {summary['skipped']} already done, errors {summary['errors']}")
        return
    token, timings = engine.encode_inputs(files)
    print("encoded " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()), file=sys.stderr)
    if needs_emergent_notice(list(files)):
        sys.stdout.flush()
        print(EMERGENT_NOTICE, file=sys.stderr, flush=True)  # before the answer, not after it
    if prompt is not None:
        _answer(engine, [], prompt, token, sampling)
        return
    history: list[tuple[str, str]] = []
    for line in sys.stdin:
        message = line.strip()
        if not message:
            break
        history.append((message, _answer(engine, history, message, token, sampling)))


def _answer(engine: PandaGPTChat, history: list, message: str, token: torch.Tensor, sampling: dict) -> str:
    pieces = []
    print("Assistant: ", end="", flush=True)
    for piece in engine.generate(history, message, token, **sampling):
        pieces.append(piece)
        print(piece, end="", flush=True)
    print(flush=True)
    return "".join(pieces)
