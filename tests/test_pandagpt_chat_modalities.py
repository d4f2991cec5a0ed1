"""PandaGPT chat on all six modalities: the summed soft token, answers, the emergent notice and the CLI."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lit_multimodal.cli import main
from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.pandagpt import chat as chat_module
from lit_multimodal.multimodal.pandagpt.chat import EMERGENT_NOTICE, PandaGPTChat
from lit_multimodal.multimodal.pandagpt.export import delta_state_dict
from tests.pandagpt_fixtures import tiny_pandagpt, write_chat_fit_config, write_wav

MODALITIES = ("image", "video", "audio", "depth", "thermal", "imu")
PROMPT = "What is going on here?"
CASES = [MODALITIES, *[(name,) for name in MODALITIES], ("audio", "depth"), ("video", "imu"), ("thermal", "image")]


def write_video(path: Path, frames: int = 20, fps: int = 10, size: tuple[int, int] = (160, 120)) -> Path:
    """A bright square moving over a background that brightens frame by frame."""
    w, h = size
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    for i in range(frames):
        img = np.full((h, w, 3), 30 + 6 * i, np.uint8)
        img[40:80, 5 * i : 5 * i + 30] = (250, 200, 40)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_inputs(root: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    image = root / "scene.png"
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(image)
    depth = root / "depth.png"  # millimetres in a 16-bit PNG, 0.5 m to 4 m
    Image.fromarray(rng.integers(500, 4000, (60, 80)).astype(np.uint16)).save(depth)
    assert Image.open(depth).mode.startswith("I")  # stored with 16-bit depth, not as 8-bit grey
    thermal = root / "thermal.png"
    Image.fromarray((rng.random((50, 64)) * 255).astype(np.uint8), mode="L").save(thermal)
    imu = root / "imu.npy"  # 6 channels (accelerometer xyz, gyroscope xyz) x 2000 samples
    np.save(imu, rng.standard_normal((6, 2000)).astype(np.float32))
    files = {
        "image": image,
        "video": write_video(root / "clip.mp4"),
        "audio": write_wav(root / "tone.wav", frequency=330),
        "depth": depth,
        "thermal": thermal,
        "imu": imu,
    }
    return {name: str(path) for name, path in files.items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny PandaGPT with non-zero LoRA, its delta, a fit config naming tiny ImageBind, and six input files."""
    root = tmp_path_factory.mktemp("chat_modalities")
    llm, model = tiny_pandagpt(root, seed=2)
    delta = root / "pytorch_model.pt"
    torch.save(delta_state_dict(model), delta)
    config = write_chat_fit_config(root, llm)
    encoder = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
    return SimpleNamespace(
        root=root, model=model, delta=delta, config=config, files=write_inputs(root),
        engine=PandaGPTChat(model, encoder),
    )  # fmt: skip


def independent_projections(setup) -> dict[str, torch.Tensor]:
    """``W e + b`` per modality, each embedded by its own fresh encoder call."""
    weight = setup.model.llama_proj.weight.detach()
    bias = setup.model.llama_proj.bias.detach()
    out = {}
    for name in MODALITIES:
        encoder = ImageBindEncoder(preset="tiny", config={"pandagpt_skip_audio_scale": True}, progress=False)
        embedding = encoder.encode({name: [setup.files[name]]})[name]
        assert embedding.shape == (1, 1024)
        out[name] = embedding @ weight.T + bias
    return out


def test_combined_token_is_the_sum_of_per_modality_projections(setup):
    projections = independent_projections(setup)
    token, timings = setup.engine.encode_inputs(setup.files)
    expected = sum(projections[name] for name in MODALITIES)  # the bias counts once per modality (official)
    torch.testing.assert_close(token, expected, rtol=1e-5, atol=1e-5)
    assert set(timings) == {*MODALITIES, "total"}
    for name in MODALITIES:
        single, _ = setup.engine.encode_inputs({name: setup.files[name]})
        torch.testing.assert_close(single, projections[name], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(single, token, atol=1e-3)  # every modality contributes
    # the modalities give different embeddings (no input silently read as another)
    distinct = {tuple(projections[name][0, :4].tolist()) for name in MODALITIES}
    assert len(distinct) == len(MODALITIES)


def greedy_reference(engine: PandaGPTChat, token: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Token ids of transformers' greedy ``generate`` on the same prompt embeddings."""
    embeds = engine.prompt_embeds([], PROMPT, token)
    with torch.no_grad():
        out = engine.model.llama_model.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=engine.tokenizer.eos_token_id,
            pad_token_id=engine.tokenizer.eos_token_id,
        )
    return out[0].tolist()


@pytest.mark.parametrize("names", CASES, ids=["+".join(case) for case in CASES])
def test_chat_answers_and_flags_emergent_transfer(setup, names, monkeypatch, capsys):
    files = {name: setup.files[name] for name in names}
    engine = setup.engine
    token, _ = engine.encode_inputs(files)
    picked: list[int] = []
    pick = chat_module.pick_token
    monkeypatch.setattr(chat_module, "pick_token", lambda *args: picked.append(pick(*args)) or picked[-1])
    pieces = list(engine.generate([], PROMPT, token, max_new_tokens=10, do_sample=False))
    answer = "".join(pieces)
    assert isinstance(answer, str) and all(isinstance(piece, str) for piece in pieces)
    # the tokens chosen are transformers' greedy ones, up to the stop marker
    reference = greedy_reference(engine, token, max_new_tokens=10)
    decode = engine.tokenizer.decode
    assert picked and picked == reference[: len(picked)]
    assert len(picked) == len(reference) or "###" in decode(picked, skip_special_tokens=True)
    expected = decode(reference, skip_special_tokens=True).split("###")[0].rstrip()
    if "\ufffd" not in expected:  # random weights may emit invalid UTF-8 bytes (see the streaming test below)
        assert answer == expected

    # the `chat` entry point on the same engine: prints the answer, and the notice only without image/video
    monkeypatch.setattr(PandaGPTChat, "from_files", classmethod(lambda cls, *args, **kwargs: engine))
    chat_module.chat(ckpt=str(setup.delta), prompt=PROMPT, greedy=True, max_new_tokens=10, **files)
    captured = capsys.readouterr()
    assert f"Assistant: {answer}\n" in captured.out
    saw_training_modality = "image" in names or "video" in names
    assert (EMERGENT_NOTICE in captured.err) == (not saw_training_modality)


class ScriptedLM(nn.Module):
    """A causal-LM double that emits a fixed token sequence."""

    def __init__(self, vocab: int, script: list[int]) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, 8)
        self.script = script
        self.calls = 0

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def forward(self, inputs_embeds=None, input_ids=None, past_key_values=None, use_cache=True):
        logits = torch.zeros(1, 1, self.embedding.num_embeddings)
        logits[0, -1, self.script[min(self.calls, len(self.script) - 1)]] = 10.0
        self.calls += 1
        return SimpleNamespace(logits=logits, past_key_values=None)


def test_streamed_answer_keeps_multibyte_characters(setup):
    tokenizer = setup.engine.tokenizer
    script = tokenizer("A 你好 cat.\n###", add_special_tokens=False).input_ids
    assert any(tokenizer.convert_ids_to_tokens(i).startswith("<0x") for i in script)  # byte-fallback pieces
    lm = ScriptedLM(len(tokenizer), script)
    fake = SimpleNamespace(
        llama_model=lm, llama_proj=nn.Linear(1024, 8), llm_path=None, bos_token_id=None, pad_token_id=None
    )
    fake.eval = lambda: fake
    engine = PandaGPTChat(fake, setup.engine.encoder, tokenizer)
    assert engine.answer([], PROMPT, torch.zeros(1, 8), do_sample=False) == "A 你好 cat."


def test_cli_chat_with_all_six_modalities(setup, capsys):
    flags = [arg for name in MODALITIES for arg in (f"--{name}", setup.files[name])]
    args = ["chat", "--config", str(setup.config), "--ckpt", str(setup.delta), *flags]
    code = 0
    try:
        main([*args, "--prompt", PROMPT, "--greedy", "true", "--max_new_tokens", "10"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    token, _ = setup.engine.encode_inputs(setup.files)
    expected = setup.engine.answer([], PROMPT, token, max_new_tokens=10, do_sample=False)
    assert f"Assistant: {expected}\n" in out
    assert EMERGENT_NOTICE not in err + out
    encoded = next(line for line in err.splitlines() if line.startswith("encoded "))
    assert all(f"{name} " in encoded for name in MODALITIES)
