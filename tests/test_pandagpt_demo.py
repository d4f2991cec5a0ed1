"""PandaGPT web demo: input checks, the request handler (emergent flag, history, errors) and the page in Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.chat import MODALITY_ORDER, PandaGPTChat
from lit_multimodal.multimodal.pandagpt.demo import ChatState, DemoHandler, history_messages, stats_text
from lit_multimodal.multimodal.pandagpt.demo_inputs import DemoLimits, check_input_file
from tests.pandagpt_fixtures import tiny_pandagpt, write_wav

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def write_png(path: Path, seed: int = 0) -> Path:
    Image.fromarray((np.random.default_rng(seed).random((40, 48, 3)) * 255).astype(np.uint8)).save(path)
    return path


def write_mp4(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 10 % 256, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny PandaGPT engine (non-zero LoRA) and input files of every kind."""
    root = tmp_path_factory.mktemp("demo")
    llm, model = tiny_pandagpt(root, seed=1)
    encoder = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
    engine = PandaGPTChat(model, encoder)
    broken = root / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    depth = root / "depth.npy"
    np.save(depth, np.random.default_rng(0).random((24, 24)).astype(np.float32))
    imu = root / "imu.csv"
    imu.write_text("\n".join(",".join(str(v) for v in row) for row in np.random.default_rng(0).random((50, 6))))
    return SimpleNamespace(
        root=root, engine=engine, image=write_png(root / "cat.png"), audio=write_wav(root / "tone.wav"),
        video=write_mp4(root / "clip.mp4"), broken=broken, depth=depth, imu=imu,
    )  # fmt: skip


def final(replies: list) -> object:
    assert replies and replies[-1].done
    return replies[-1]


# ---- input checks -----------------------------------------------------------------------------------------------


def test_files_of_the_right_kind_pass(setup):
    limits = DemoLimits()
    check_input_file("image", setup.image, limits)
    check_input_file("thermal", setup.image, limits)
    check_input_file("audio", setup.audio, limits)
    check_input_file("video", setup.video, limits)
    check_input_file("depth", setup.depth, limits)
    check_input_file("depth", setup.image, limits)
    check_input_file("imu", setup.imu, limits)


@pytest.mark.parametrize(
    ("slot", "file", "words"),
    [
        ("image", "audio", ["tone.wav", "audio file", "image slot"]),
        ("audio", "image", ["cat.png", "an image", "audio slot"]),
        ("image", "video", ["clip.mp4", "a video", "image slot"]),
        ("video", "audio", ["tone.wav", "audio file", "video slot"]),
        ("imu", "image", ["cat.png", "imu slot"]),
        ("image", "broken", ["broken.jpg", "not a readable file", "image slot"]),
    ],
)
def test_wrong_kind_or_unreadable_file_is_named(setup, slot, file, words):
    with pytest.raises(InputError) as info:
        check_input_file(slot, getattr(setup, file), DemoLimits())
    message = str(info.value)
    assert message.startswith(getattr(setup, file).name + ":")
    for word in words:
        assert word in message


def test_recordings_over_the_limit_name_the_file_and_the_limit(setup):
    limits = DemoLimits(max_audio_seconds=1.5, max_video_seconds=1.0)
    with pytest.raises(InputError, match=r"^tone\.wav: audio of 2 s is longer than the limit of 1\.5 s"):
        check_input_file("audio", setup.audio, limits)
    with pytest.raises(InputError, match=r"^clip\.mp4: video of 2 s is longer than the limit of 1 s"):
        check_input_file("video", setup.video, limits)
    long_audio = write_wav(setup.root / "long.wav", seconds=61, rate=1000)
    with pytest.raises(InputError, match=r"long\.wav: audio of 1\.01667 min is longer than the limit of 1 min"):
        check_input_file("audio", long_audio, DemoLimits(max_audio_seconds=60))
    # the defaults: 10 min audio, 5 min video
    assert DemoLimits() == DemoLimits(max_audio_seconds=600, max_video_seconds=300)
    check_input_file("audio", long_audio, DemoLimits())


# ---- request handler --------------------------------------------------------------------------------------------

SAMPLING = {"max_new_tokens": 8, "top_p": 0.01, "temperature": 1.0}


def test_image_and_audio_answer_streams_and_is_not_emergent(setup):
    handler = DemoHandler(setup.engine, seed=0)
    state = ChatState()
    files = {"image": str(setup.image), "audio": str(setup.audio), "video": None}
    replies = list(handler.respond(state, files, "What is happening?", **SAMPLING))
    reply = final(replies)
    token, _ = setup.engine.encode_inputs({"image": str(setup.image), "audio": str(setup.audio)})
    expected = setup.engine.answer([], "What is happening?", token, do_sample=True, seed=0, **SAMPLING)
    assert reply.error is None
    assert reply.history == [("What is happening?", expected)] == state.history
    assert reply.modalities == ("image", "audio")
    assert reply.emergent is False
    assert set(reply.timings) == {"image", "audio", "total"}
    assert reply.tokens == setup.engine.generated_tokens and 1 <= reply.tokens <= 8
    assert reply.tokens_per_second is not None and reply.tokens_per_second > 0
    # every streamed update shows a prefix of the final answer, growing
    partial = [r.history[-1][1] for r in replies[:-1]]
    assert all(expected.startswith(text) for text in partial)
    assert all(len(a) < len(b) for a, b in zip(partial, partial[1:], strict=False))
    assert "image" in stats_text(reply) and "tokens/s" in stats_text(reply)


@pytest.mark.parametrize(
    ("files", "emergent"),
    [(["audio"], True), (["depth", "imu"], True), (["video"], False), (["video", "audio"], False)],
)
def test_emergent_flag_when_no_image_or_video(setup, files, emergent):
    handler = DemoHandler(setup.engine)
    reply = final(list(handler.respond(ChatState(), {n: str(getattr(setup, n)) for n in files}, "Hi", **SAMPLING)))
    assert reply.error is None
    assert reply.modalities == tuple(n for n in MODALITY_ORDER if n in files)
    assert reply.emergent is emergent


def test_history_is_carried_as_the_official_demo_and_inputs_encoded_once(setup, monkeypatch):
    seen, encoded = [], []
    engine = setup.engine
    original_generate, original_encode = PandaGPTChat.generate, PandaGPTChat.encode_inputs

    def spy_generate(self, history, message, embedding, **kwargs):
        seen.append((list(history), message))
        return original_generate(self, history, message, embedding, **kwargs)

    def spy_encode(self, files):
        encoded.append(dict(files))
        return original_encode(self, files)

    monkeypatch.setattr(PandaGPTChat, "generate", spy_generate)
    monkeypatch.setattr(PandaGPTChat, "encode_inputs", spy_encode)
    handler = DemoHandler(engine)
    state = ChatState()
    files = {"audio": str(setup.audio)}
    first = final(list(handler.respond(state, files, "What do you hear?", **SAMPLING)))
    second = final(list(handler.respond(state, files, "And now?", **SAMPLING)))
    assert seen == [([], "What do you hear?"), (first.history, "And now?")]
    assert second.history == [*first.history, ("And now?", second.history[-1][1])] == state.history
    assert len(encoded) == 1  # same files: the soft token is reused
    assert history_messages(state.history)[:2] == [
        {"role": "user", "content": "What do you hear?"},
        {"role": "assistant", "content": first.history[0][1]},
    ]
    # new files: encoded again, the history is kept (clear starts a new one)
    third = final(list(handler.respond(state, {"image": str(setup.image)}, "Now?", **SAMPLING)))
    assert len(encoded) == 2 and third.modalities == ("image",) and len(third.history) == 3


def test_bad_input_leaves_the_conversation_and_the_next_request_works(setup):
    handler = DemoHandler(setup.engine)
    state = ChatState()
    final(list(handler.respond(state, {"audio": str(setup.audio)}, "First", **SAMPLING)))
    before = list(state.history)
    cases = [
        ({"image": str(setup.audio)}, "Hi", "tone.wav: this is an audio file"),
        ({"image": str(setup.broken)}, "Hi", "broken.jpg: not a readable file"),
        ({"image": str(setup.root / "gone.png")}, "Hi", "gone.png: file not found"),
        ({"image": str(setup.image)}, "   ", "Type a question"),
        ({}, "Hi", "Upload at least one file"),
    ]
    for files, message, words in cases:
        replies = list(handler.respond(state, files, message, **SAMPLING))
        assert len(replies) == 1 and replies[0].done and words in replies[0].error
        assert replies[0].history == before == state.history
    limited = DemoHandler(setup.engine, DemoLimits(max_audio_seconds=1))
    (reply,) = limited.respond(state, {"audio": str(setup.audio)}, "Hi", **SAMPLING)
    assert "tone.wav" in reply.error and "limit of 1 s" in reply.error
    (reply,) = handler.respond(state, {"audio": str(setup.audio)}, "Hi", max_new_tokens=8, top_p=0.0)
    assert "top-p" in reply.error
    reply = final(list(handler.respond(state, {"image": str(setup.image)}, "Second", **SAMPLING)))
    assert reply.error is None and [q for q, _ in state.history] == ["First", "Second"]


def test_loader_errors_name_the_file_not_its_full_path(setup, monkeypatch):
    def failing_encode(self, files):
        raise InputError(f"{files['image']}: image of 1 x 1 pixels, at least 2 x 2 expected")

    monkeypatch.setattr(PandaGPTChat, "encode_inputs", failing_encode)
    (reply,) = DemoHandler(setup.engine).respond(ChatState(), {"image": str(setup.image)}, "Hi", **SAMPLING)
    assert reply.error == "cat.png: image of 1 x 1 pixels, at least 2 x 2 expected"


def test_page_builds_with_the_stable_element_ids(setup):
    from lit_multimodal.multimodal.pandagpt.demo import build_ui

    blocks = build_ui(DemoHandler(setup.engine, untrained=True))
    ids = {block.elem_id for block in blocks.blocks.values() if getattr(block, "elem_id", None)}
    expected = {"chatbot", "question", "send", "clear", "modalities", "emergent-badge", "stats", "demo-error"}
    expected |= {"untrained-note"} | {f"input-{name}" for name in MODALITY_ORDER}
    assert expected <= ids
    assert blocks.analytics_enabled is False


# ---- the page in headless Chromium ------------------------------------------------------------------------------


def _browser_or_skip() -> None:
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed (pip install playwright; no browser download needed)")
    if not missing:
        return
    reason = "; ".join(missing)
    if os.environ.get("LIT_MM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required (LIT_MM_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_demo(options: list[str], tmp_path: Path) -> Iterator[SimpleNamespace]:
    """``python -m lit_multimodal demo <options>`` on a free loopback port; stopped (with its children) on exit."""
    _browser_or_skip()
    port = _free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "uploads")}
    args = [sys.executable, "-m", "lit_multimodal", "demo", *options, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):  # the server needs torch, transformers and gradio imported: wait for it, or its exit
            if proc.poll() is not None:
                pytest.fail(f"demo server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"demo server did not answer on {url}:\n{log.read_text()[-3000:]}")
        yield SimpleNamespace(url=url, log=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def demo_server(tmp_path):
    """The demo with the quickstart model (no checkpoint)."""
    config = str(REPO / "configs/quickstart/pandagpt.yaml")
    with running_demo(["--config", config, "--max_new_tokens", "12"], tmp_path) as server:
        yield server


@pytest.mark.browser
def test_demo_page_in_headless_chromium(demo_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    image = write_png(tmp_path / "cat.png")
    audio = write_wav(tmp_path / "tone.wav")
    wrong = shutil.copy(audio, tmp_path / "wrong.wav")
    wait = 60_000  # generous waits for 2 shared CPU cores; no timing is asserted

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            external = []
            page.on("request", lambda r: None if r.url.startswith(demo_server.url) else external.append(r.url))
            page.goto(demo_server.url)
            expect(page.locator("#untrained-note")).to_contain_text("No checkpoint given", timeout=wait)
            bot = page.locator("#chatbot .message-row.bot-row")
            user = page.locator("#chatbot .message-row.user-row")

            def upload(slot: str, path: Path) -> None:
                page.locator(f"#input-{slot} input[type=file]").set_input_files(str(path))
                expect(page.locator(f"#input-{slot} a[href$='/{Path(path).name}']")).to_be_visible(timeout=wait)

            def ask(question: str, answers: int) -> None:
                page.locator("#question textarea").fill(question)
                page.locator("#send").click()
                expect(bot).to_have_count(answers, timeout=wait)
                expect(page.locator("#stats")).to_contain_text("tokens/s", timeout=wait)
                expect(page.locator("#question textarea")).to_have_value("", timeout=wait)  # set when done

            # image + audio: an answer, both modalities, no emergent badge
            upload("image", image)
            upload("audio", audio)
            ask("What is happening?", 1)
            expect(user.first).to_contain_text("What is happening?")
            assert bot.first.inner_text().strip()
            expect(page.locator("#modalities")).to_have_text("Soft token from: image + audio")
            expect(page.locator("#stats")).to_contain_text("Encode: image")
            expect(page.locator("#emergent-badge")).to_be_hidden()

            # clear, audio only: the emergent badge; a second turn continues the conversation
            page.locator("#clear").click()
            expect(bot).to_have_count(0, timeout=wait)
            expect(page.locator("#input-image a")).to_have_count(0)
            upload("audio", audio)
            ask("What do you hear?", 1)
            expect(page.locator("#modalities")).to_have_text("Soft token from: audio")
            expect(page.locator("#emergent-badge")).to_be_visible()
            expect(page.locator("#emergent-badge")).to_contain_text("Emergent")
            ask("Tell me more.", 2)
            expect(user).to_have_count(2)
            page.screenshot(path=str(tmp_path / "pandagpt_demo.png"))

            # a WAV in the image slot: an error naming the file; the conversation stays
            upload("image", wrong)
            page.locator("#question textarea").fill("And this?")
            page.locator("#send").click()
            expect(page.locator("#demo-error")).to_be_visible(timeout=wait)
            expect(page.locator("#demo-error")).to_contain_text("wrong.wav")
            expect(page.locator("#demo-error")).to_contain_text("image slot")
            expect(bot).to_have_count(2)

            # the next valid request works and hides the error
            page.locator("#clear").click()
            expect(page.locator("#demo-error")).to_be_hidden(timeout=wait)
            upload("image", image)
            ask("What is in the image?", 1)
            expect(page.locator("#modalities")).to_have_text("Soft token from: image")
            expect(page.locator("#emergent-badge")).to_be_hidden()
            expect(page.locator("#demo-error")).to_be_hidden()
            assert external == []  # the page loads nothing from the internet
        finally:
            browser.close()
    assert (tmp_path / "pandagpt_demo.png").stat().st_size > 10_000
