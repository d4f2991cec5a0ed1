"""PandaGPT web demo: upload any subset of image, video, audio, thermal, depth and IMU files and chat about them.

The page is built with Gradio, as the official PandaGPT demo: its file-upload and streaming chat widgets come built
in, and it serves from a single local process without a separate front-end build. The conversation history and
the prompt follow the official demo (see :mod:`lit_multimodal.multimodal.pandagpt.chat`).

Request handling (:class:`DemoHandler`) is plain Python and knows nothing about Gradio, so it can be tested without
a browser; :func:`build_ui` only wires it to widgets, and :func:`demo` is the ``lit-mm demo`` command.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.chat import MODALITY_ORDER, needs_emergent_notice
from lit_multimodal.multimodal.pandagpt.demo_inputs import DemoLimits, check_input_file, format_minutes

__all__ = ["ChatState", "DemoHandler", "DemoReply", "build_ui", "demo"]

EMERGENT_BADGE = "Emergent: no image or video given; PandaGPT was trained on image-text pairs only"
UNTRAINED_NOTE = (
    "**No checkpoint given**: the LoRA and the projection are untrained (LoRA adds nothing, the projection is "
    "random), so the answers show the pipeline, not a trained model. Start with `--ckpt <delta>` to load one."
)


@dataclass
class ChatState:
    """One browser session's conversation: the ``(question, answer)`` history and the soft token it uses.

    The token is re-encoded only when the uploaded files change; the history is kept until cleared (as the
    official demo, which keeps the history when the inputs change).
    """

    history: list[tuple[str, str]] = field(default_factory=list)
    inputs_key: tuple = ()
    token: Any = None
    modalities: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class DemoReply:
    """One update of the page while a request is handled.

    Args:
        history: the conversation to show, the answer in progress last.
        modalities: the modalities summed into the soft token.
        emergent: no image or video went in (the answer relies on emergent cross-modal transfer).
        timings: seconds spent encoding each modality (and ``total``).
        tokens: tokens generated so far.
        tokens_per_second: generation speed (set on the final update).
        error: a message for the page (bad input); the history is then unchanged.
        done: the last update of the request.
    """

    history: list[tuple[str, str]]
    modalities: tuple[str, ...] = ()
    emergent: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    tokens_per_second: float | None = None
    error: str | None = None
    done: bool = False


class DemoHandler:
    """Handles the demo's requests with a :class:`~lit_multimodal.multimodal.pandagpt.chat.PandaGPTChat`.

    Args:
        engine: the chat engine (``encode_inputs``, ``generate``, ``tokenizer``).
        limits: input limits.
        untrained: no checkpoint was loaded (the page says so).
        seed: sampling seed of every answer.
    """

    def __init__(self, engine: Any, limits: DemoLimits | None = None, untrained: bool = False, seed: int = 0) -> None:
        self.engine = engine
        self.limits = limits or DemoLimits()
        self.untrained = untrained
        self.seed = seed

    def _count_tokens(self, text: str) -> int:
        """Tokens generated so far: the engine's count, else the answer re-tokenized."""
        count = getattr(self.engine, "generated_tokens", None)
        if isinstance(count, int):
            return count
        return len(self.engine.tokenizer(text, add_special_tokens=False).input_ids) if text else 0

    def respond(
        self,
        state: ChatState,
        files: Mapping[str, str | None],
        message: str,
        max_new_tokens: int = 256,
        top_p: float = 0.01,
        temperature: float = 1.0,
        greedy: bool | None = None,
    ) -> Iterator[DemoReply]:
        """Answers ``message`` about the uploaded files, streaming; the last update has ``done`` set.

        Bad input (no question, no file, a wrong or unreadable file, a recording over the limit, bad sampling
        settings) gives one update with ``error`` set and leaves ``state`` unchanged.

        Args:
            state: the session's conversation; the new turn is appended when the answer is complete.
            files: upload slot → file path (None or missing: nothing uploaded there).
            message: the user's question.
            max_new_tokens: most tokens in the answer.
            top_p: nucleus sampling mass.
            temperature: sampling temperature.
            greedy: greedy decoding (top-p and temperature unused); None: the model's ``decoding``.

        Yields:
            :class:`DemoReply` updates.
        """
        history = list(state.history)

        def refuse(error: str) -> DemoReply:
            return DemoReply(history, state.modalities, False, dict(state.timings), error=error, done=True)

        message = (message or "").strip()
        unknown = sorted(set(files) - set(MODALITY_ORDER))
        if unknown:
            yield refuse(f"unknown input slot {unknown}; expected some of {', '.join(MODALITY_ORDER)}")
            return
        given = {name: str(files[name]) for name in MODALITY_ORDER if files.get(name)}
        if not message:
            yield refuse("Type a question first.")
            return
        if not given:
            yield refuse("Upload at least one file (image, video, audio, thermal, depth or IMU).")
            return
        errors = []
        for name, path in given.items():
            try:
                check_input_file(name, path, self.limits)
            except InputError as err:
                errors.append(str(err))
        if int(max_new_tokens) < 1:
            errors.append(f"max new tokens must be at least 1, got {max_new_tokens}")
        do_sample = getattr(self.engine, "default_do_sample", True) if greedy is None else not greedy
        if do_sample and (temperature <= 0 or not 0 < top_p <= 1):
            errors.append(f"sampling needs temperature > 0 and 0 < top-p <= 1, got {temperature} and {top_p}")
        if errors:
            yield refuse("\n".join(errors))
            return
        key = tuple((name, path, os.path.getsize(path), os.path.getmtime(path)) for name, path in given.items())
        if key != state.inputs_key or state.token is None:
            try:
                token, timings = self.engine.encode_inputs(given)
            except InputError as err:  # the loaders name the full path; show the file name
                text = str(err)
                for path in given.values():
                    text = text.replace(path, Path(path).name)
                yield refuse(text)
                return
            state.inputs_key, state.token, state.timings = key, token, dict(timings)
            state.modalities = tuple(given)
        modalities, timings = state.modalities, dict(state.timings)
        emergent = needs_emergent_notice(modalities)
        answer = ""
        # The emergent badge (and the inputs' line) show before the first word of the answer.
        yield DemoReply([*history, (message, answer)], modalities, emergent, timings, 0)
        start = time.perf_counter()
        pieces = self.engine.generate(
            history, message, state.token, max_new_tokens=int(max_new_tokens), top_p=top_p,
            temperature=temperature, do_sample=do_sample, seed=self.seed,
        )  # fmt: skip
        for piece in pieces:
            answer += piece
            yield DemoReply([*history, (message, answer)], modalities, emergent, timings, self._count_tokens(answer))
        seconds = time.perf_counter() - start
        tokens = self._count_tokens(answer)
        state.history = [*history, (message, answer)]
        speed = tokens / seconds if seconds > 0 else None
        yield DemoReply(list(state.history), modalities, emergent, timings, tokens, speed, done=True)


def history_messages(history: list[tuple[str, str]]) -> list[dict[str, str]]:
    """``(question, answer)`` pairs as chat messages (``role``/``content``), as Gradio's chatbot shows them."""
    messages = []
    for question, answer in history:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    return messages


def modalities_text(modalities: tuple[str, ...]) -> str:
    """The line that names the modalities summed into the soft token."""
    if not modalities:
        return "Soft token: no input yet"
    return "Soft token from: **" + " + ".join(modalities) + "**"


def stats_text(reply: DemoReply) -> str:
    """Per-modality encode time and generation speed."""
    if not reply.timings:
        return ""
    encode = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in reply.timings.items() if name != "total")
    text = f"Encode: {encode} (total {reply.timings.get('total', 0.0):.2f} s)"
    if reply.tokens_per_second is not None:
        text += f" · Generation: {reply.tokens} tokens, {reply.tokens_per_second:.1f} tokens/s"
    elif reply.tokens:
        text += f" · Generating: {reply.tokens} tokens"
    return text


CSS = """
#emergent-badge { display: inline-block; padding: 4px 10px; border-radius: 6px; background: #fff3cd;
  color: #7a5a00; border: 1px solid #e0c060; font-weight: 600; }
#demo-error { padding: 6px 10px; border-radius: 6px; background: #fde8e8; color: #9b1c1c; border: 1px solid #f0a0a0; }
"""


def build_ui(
    handler: DemoHandler, max_new_tokens: int = 256, top_p: float = 0.01, temperature: float = 1.0, greedy: bool = False
) -> Any:
    """The Gradio page around ``handler``.

    Elements with stable ids: ``input-<modality>`` (upload slots), ``question``, ``send``, ``clear``, ``chatbot``,
    ``modalities``, ``emergent-badge`` (visible only for an emergent answer), ``stats``, ``demo-error`` (visible
    on bad input), ``untrained-note`` (no checkpoint), ``greedy`` (greedy decoding on/off).

    Args:
        handler: the request handler.
        max_new_tokens: initial "max new tokens".
        top_p: initial top-p.
        temperature: initial temperature.
        greedy: initial state of the "Greedy" toggle.

    Returns:
        The ``gradio.Blocks`` app (not launched).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    labels = {
        "image": "Image",
        "video": "Video",
        "audio": "Audio",
        "thermal": "Thermal image",
        "depth": "Depth map",
        "imu": "IMU (.npy/.csv)",
    }
    limits = handler.limits
    with gr.Blocks(title="PandaGPT demo", analytics_enabled=False) as blocks:
        state = gr.State(None)  # a ChatState, made on the first request of a session
        gr.Markdown(
            "## PandaGPT\nUpload any subset of the inputs, ask a question. All inputs are summed into one soft "
            "token. The model was trained on image-text pairs only: answers without an image or video rely on "
            f"emergent cross-modal transfer. Limits: audio {format_minutes(limits.max_audio_seconds)}, video "
            f"{format_minutes(limits.max_video_seconds)}."
        )
        gr.Markdown(UNTRAINED_NOTE, elem_id="untrained-note", visible=handler.untrained)
        with gr.Row():
            with gr.Column(scale=2, min_width=420):
                uploads = {}
                for pair in (("image", "video"), ("audio", "thermal"), ("depth", "imu")):
                    with gr.Row():
                        for name in pair:
                            uploads[name] = gr.File(
                                label=labels[name], elem_id=f"input-{name}", type="filepath", height=140
                            )
                max_tokens = gr.Slider(1, 1024, value=max_new_tokens, step=1, label="Max new tokens")
                top_p_box = gr.Slider(0.01, 1.0, value=top_p, step=0.01, label="Top-p")
                temperature_box = gr.Slider(0.01, 2.0, value=temperature, step=0.01, label="Temperature")
                greedy_box = gr.Checkbox(value=greedy, label="Greedy (ignore top-p and temperature)", elem_id="greedy")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="PandaGPT", elem_id="chatbot", height=420, feedback_options=None)
                error = gr.Markdown("", elem_id="demo-error", visible=False)
                with gr.Row():
                    modalities = gr.Markdown(modalities_text(()), elem_id="modalities")
                    badge = gr.Markdown(EMERGENT_BADGE, elem_id="emergent-badge", visible=False)
                stats = gr.Markdown("", elem_id="stats")
                question = gr.Textbox(label="Question", placeholder="Ask about the inputs", elem_id="question")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    clear = gr.Button("Clear", elem_id="clear")

        def on_send(chat_state, text, tokens, nucleus, temp, use_greedy, *paths):
            files = dict(zip(MODALITY_ORDER, paths, strict=True))
            chat_state = chat_state if isinstance(chat_state, ChatState) else ChatState()
            for reply in handler.respond(chat_state, files, text, tokens, nucleus, temp, bool(use_greedy)):
                if reply.error:
                    yield (
                        chat_state, history_messages(reply.history), gr.update(value=reply.error, visible=True),
                        gr.update(), gr.update(), gr.update(), gr.update(),
                    )  # fmt: skip
                    return
                yield (
                    chat_state,
                    history_messages(reply.history),
                    gr.update(value="", visible=False),
                    modalities_text(reply.modalities),
                    gr.update(value=EMERGENT_BADGE, visible=reply.emergent),
                    stats_text(reply),
                    "" if reply.done else gr.update(),
                )

        def on_clear():
            return (
                None, [], gr.update(value="", visible=False), modalities_text(()),
                gr.update(visible=False), "", "", *[None for _ in MODALITY_ORDER],
            )  # fmt: skip

        slots = [uploads[name] for name in MODALITY_ORDER]  # the order on_send and on_clear use
        inputs = [state, question, max_tokens, top_p_box, temperature_box, greedy_box, *slots]
        outputs = [state, chatbot, error, modalities, badge, stats, question]
        send.click(on_send, inputs, outputs)
        question.submit(on_send, inputs, outputs)
        clear.click(on_clear, None, [*outputs, *slots])
    return blocks


def demo(
    fit_config: str | list[str],
    ckpt: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    imagebind_checkpoint: str | None = None,
    llm_path: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    max_new_tokens: int = 256,
    top_p: float = 0.01,
    temperature: float = 1.0,
    seed: int = 0,
    max_audio_seconds: float = 600.0,
    max_video_seconds: float = 300.0,
    greedy: bool | None = None,
) -> None:
    """Serves the PandaGPT web demo (Gradio) until interrupted.

    Upload any subset of image, video, audio, thermal, depth and IMU files, ask a question and get the answer
    streamed; the page shows the modalities in the soft token, an "emergent" badge when no image or video was
    given, per-modality encode time and tokens/s. Nothing is fetched from the internet (no analytics, no share
    link).

    Args:
        fit_config: the ``lit-mm fit`` config of the model: a YAML path or the fit arguments; on the command line
            ``--config a.yaml [--config b.yaml] [--model.init_args.x y]``, read exactly as ``lit-mm fit`` reads them
            (e.g. ``configs/pandagpt_7b.yaml`` or ``configs/quickstart/pandagpt.yaml``).
        ckpt: the delta ``pytorch_model.pt``, a ``last.ckpt`` or a DeepSpeed folder; leave out to run the
            untrained LoRA and projection (the page says so).
        host: address to listen on (``0.0.0.0`` for every interface).
        port: port to listen on.
        imagebind_checkpoint: ImageBind weights; default: the config's embedder checkpoint.
        llm_path: base LLM folder; overrides the config's.
        dtype: LLM dtype override (``float32``, ``bfloat16``, ``float16``).
        device: ``cpu`` or ``cuda``.
        max_new_tokens: initial "max new tokens" of the page.
        top_p: initial top-p (the official demo's 0.01).
        temperature: initial temperature.
        seed: sampling seed of every answer.
        max_audio_seconds: longest audio accepted (10 min).
        max_video_seconds: longest video accepted (5 min).
        greedy: initial state of the page's "Greedy" toggle; default: the config's ``model.decoding``.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from lit_multimodal.multimodal.pandagpt.chat import PandaGPTChat

    engine = PandaGPTChat.from_files(ckpt, fit_config, imagebind_checkpoint, llm_path, dtype, device)
    limits = DemoLimits(max_audio_seconds=max_audio_seconds, max_video_seconds=max_video_seconds)
    handler = DemoHandler(engine, limits, untrained=ckpt is None, seed=seed)
    if greedy is None:
        greedy = not engine.default_do_sample
    blocks = build_ui(handler, max_new_tokens=max_new_tokens, top_p=top_p, temperature=temperature, greedy=greedy)
    print(f"PandaGPT demo on http://{host}:{port}", flush=True)
    blocks.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=False, ssr_mode=False, css=CSS, footer_links=[], quiet=True
    )
