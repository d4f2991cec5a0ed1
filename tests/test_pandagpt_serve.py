"""``lit-mm serve``: the OpenAI-compatible server, driven by the real ``openai`` client on localhost."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import openai
import pytest
import torch
from PIL import Image

from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.pandagpt.chat import PandaGPTChat
from lit_multimodal.multimodal.pandagpt.serve import build_app
from lit_multimodal.multimodal.pandagpt.serve_request import RequestError, parse_request
from tests.pandagpt_fixtures import tiny_pandagpt, write_wav

QUESTION = "What is in the image?"


def start_server(app):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started
    return server, thread, sock.getsockname()[1]


def png_bytes(seed: int = 0) -> bytes:
    array = (np.random.default_rng(seed).random((40, 48, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image_part(data: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(data).decode()}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    _, model = tiny_pandagpt(root, seed=1)
    encoder = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
    engine = PandaGPTChat(model, encoder)
    server, thread, port = start_server(build_app(engine, model_name="tiny-pandagpt"))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
    image = root / "image.png"
    image.write_bytes(png_bytes())
    audio = write_wav(root / "tone.wav")
    yield SimpleNamespace(engine=engine, client=client, image=image, audio=audio, root=root, port=port)
    server.should_exit = True
    thread.join(timeout=10)


def ask(served, parts, **kwargs):
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION}, *parts]}]
    return served.client.chat.completions.create(model="tiny-pandagpt", messages=messages, **kwargs)


def test_models_list(served):
    assert [m.id for m in served.client.models.list().data] == ["tiny-pandagpt"]


def test_image_answer_streamed_and_not_equals_the_chat_engine(served):
    token, _ = served.engine.encode_inputs({"image": str(served.image)})
    expected = served.engine.answer([], QUESTION, token, max_new_tokens=8, do_sample=False)
    part = image_part(served.image.read_bytes())
    whole = ask(served, [part], temperature=0, max_completion_tokens=8)
    assert whole.choices[0].message.content == expected
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.to_dict()["metadata"] == {"emergent": False, "modalities": ["image"]}
    assert whole.usage.completion_tokens <= 8 and whole.usage.prompt_tokens > 5

    chunks = list(ask(served, [part], temperature=0, max_completion_tokens=8, stream=True,
                      stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_audio_only_is_flagged_emergent(served):
    data = base64.b64encode(served.audio.read_bytes()).decode()
    reply = ask(served, [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}],
                temperature=0, max_completion_tokens=4)  # fmt: skip
    assert reply.to_dict()["metadata"] == {"emergent": True, "modalities": ["audio"]}


@pytest.mark.parametrize(
    ("case", "error", "needle"),
    [
        ("no_media", openai.BadRequestError, "needs at least one"),
        ("remote_url", openai.BadRequestError, "remote URLs are not fetched"),
        ("local_path", openai.BadRequestError, "allow_local_paths"),
        ("bad_base64", openai.BadRequestError, "not valid base64"),
        ("not_an_image", openai.BadRequestError, "image input 0"),
        ("ends_with_assistant", openai.BadRequestError, "last message"),
        ("two_choices", openai.BadRequestError, "n = 1"),
        ("unknown_model", openai.NotFoundError, "does not exist"),
    ],
)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(served, case, error, needle):
    good = image_part(served.image.read_bytes())
    text = {"type": "text", "text": "Hi"}
    messages = [{"role": "user", "content": [text, good]}]
    kwargs = {"model": "tiny-pandagpt", "max_completion_tokens": 2}
    if case == "no_media":
        messages = [{"role": "user", "content": "Hi"}]
    elif case == "remote_url":
        messages[0]["content"][1] = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    elif case == "local_path":
        messages[0]["content"][1] = {"type": "image_url", "image_url": {"url": str(served.image)}}
    elif case == "bad_base64":
        messages[0]["content"][1] = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}
    elif case == "not_an_image":
        messages[0]["content"][1] = image_part(b"this is not a picture")
    elif case == "ends_with_assistant":
        messages.append({"role": "assistant", "content": "ok"})
    elif case == "two_choices":
        kwargs["n"] = 2
    elif case == "unknown_model":
        kwargs["model"] = "gpt-4o"
    with pytest.raises(error) as caught:
        served.client.chat.completions.create(messages=messages, **kwargs)
    assert needle in caught.value.message
    assert caught.value.body["type"] in ("invalid_request_error",)
    assert served.client.models.list().data  # still up


def test_local_paths_only_with_the_flag(served, tmp_path):
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"file://{served.image}"}}]}]}  # fmt: skip
    with pytest.raises(RequestError, match="allow_local_paths"):
        parse_request(body, "m", tmp_path)
    assert parse_request(body, "m", tmp_path, allow_local_paths=True).files == {"image": [str(served.image)]}
    later = {
        "model": "m",
        "messages": [
            *body["messages"],
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]},
        ],
    }
    with pytest.raises(RequestError, match="first user message") as caught:
        parse_request(later, "m", tmp_path, allow_local_paths=True)
    assert caught.value.param == "messages[2].content[0]"


class BlockingEngine:
    """A chat engine whose answer waits for ``release``: the first request holds the model."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def encode_inputs(self, files):
        return torch.zeros(1, 4), {}

    def generate(self, history, message, token, **kwargs):
        self.started.set()
        self.release.wait(30)
        yield "done"


def test_requests_beyond_the_queue_get_429(tmp_path):
    engine = BlockingEngine()
    server, thread, port = start_server(build_app(engine, model_name="m", max_queue=0))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": [image_part(png_bytes())]}]
    results = []
    first = threading.Thread(
        target=lambda: results.append(client.chat.completions.create(model="m", messages=messages))
    )
    first.start()
    try:
        assert engine.started.wait(30)
        with pytest.raises(openai.RateLimitError, match="busy"):
            client.chat.completions.create(model="m", messages=messages)
    finally:
        engine.release.set()
        first.join(30)
        server.should_exit = True
        thread.join(10)
    assert results and results[0].choices[0].message.content == "done"


class PiecesEngine:
    """A chat engine streaming fixed pieces (the split falls inside the client's stop string)."""

    finish_reason = "length"

    def encode_inputs(self, files):
        return torch.zeros(1, 4), {}

    def generate(self, history, message, token, **kwargs):
        yield from ["Hello wor", "ld. ST", "OP and more", " text"]


def test_client_stop_strings_cut_streamed_and_whole_answers():
    server, thread, port = start_server(build_app(PiecesEngine(), model_name="m"))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": [image_part(png_bytes())]}]
    try:
        whole = client.chat.completions.create(model="m", messages=messages, stop=["STOP"])
        chunks = list(client.chat.completions.create(model="m", messages=messages, stop="STOP", stream=True))
        plain = client.chat.completions.create(model="m", messages=messages)
    finally:
        server.should_exit = True
        thread.join(10)
    assert whole.choices[0].message.content == "Hello world. " and whole.choices[0].finish_reason == "stop"
    streamed = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(streamed) == "Hello world. " and all("ST" not in piece for piece in streamed)
    assert plain.choices[0].message.content == "Hello world. STOP and more text"
    assert plain.choices[0].finish_reason == "length"


def test_a_template_that_refuses_the_messages_is_a_400(tmp_path):
    from transformers import AutoTokenizer

    from lit_multimodal.multimodal.pandagpt.conversation import ConversationTokenizer
    from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_causal_lm

    folder = write_tiny_causal_lm(tmp_path / "g", "gemma")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    engine = PiecesEngine()
    engine.conversation = ConversationTokenizer(tokenizer, prompt_style="chat_template")
    server, thread, port = start_server(build_app(engine, model_name="m"))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=30)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [image_part(png_bytes())]}]
    try:
        with pytest.raises(openai.BadRequestError, match="no system role"):
            client.chat.completions.create(model="m", messages=messages, stream=True)
        assert client.chat.completions.create(model="m", messages=messages[1:]).choices[0].message.content
    finally:
        server.should_exit = True
        thread.join(10)
