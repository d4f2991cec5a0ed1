"""The embedding API, its on-disk cache, and the ``embed`` / ``zeroshot`` commands, with a tiny ImageBind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from lit_multimodal.cli import main
from lit_multimodal.multimodal.imagebind import ImageBindConfig, ImageBindEncoder, ImageBindModel, load_inputs
from lit_multimodal.multimodal.imagebind.commands import expand_files
from lit_multimodal.multimodal.pandagpt.embedder import Embedder, PrecomputedEmbedder


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread start-up costs more than the work
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(3)
    path = tmp_path / "imagebind_tiny.pth"
    torch.save(ImageBindModel(ImageBindConfig.tiny()).state_dict(), path)
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    images, sounds = [], []
    for i in range(3):
        path = tmp_path / "images" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    for i in range(2):
        path = tmp_path / "audio" / f"clip{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, rng.normal(0, 0.1, 16000 * (1 + i)).astype(np.float32), 16000)
        sounds.append(str(path))
    return {"image": images, "audio": sounds}


def _encoder(checkpoint: Path, **kwargs) -> ImageBindEncoder:
    return ImageBindEncoder(checkpoint=str(checkpoint), preset="tiny", batch_size=2, progress=False, **kwargs)


def test_encode_equals_the_model_on_the_loaded_inputs(checkpoint, files):
    out = _encoder(checkpoint).encode({"image": files["image"], "audio": files["audio"], "text": ["a dog"]})
    assert {k: tuple(v.shape) for k, v in out.items()} == {"image": (3, 1024), "audio": (2, 1024), "text": (1, 1024)}
    model = ImageBindModel(ImageBindConfig.tiny()).eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    with torch.no_grad():
        expected_audio = model.encode("audio", load_inputs("audio", files["audio"]))
        expected_image = model.encode("vision", load_inputs("vision", files["image"][:2]))
    torch.testing.assert_close(out["audio"], expected_audio)
    torch.testing.assert_close(out["image"][:2], expected_image)  # same batch of two as the encoder's
    assert out["audio"].norm(dim=-1).sub(20.0).abs().max() < 1e-3  # official x20 audio scale, per clip then mean


def test_cache_hit_equals_fresh_encode_exactly_without_building_the_model(checkpoint, files, tmp_path):
    cache_dir = tmp_path / "cache"
    fresh = _encoder(checkpoint, cache_dir=str(cache_dir)).encode(files)
    reader = _encoder(checkpoint, cache_dir=str(cache_dir), cache_only=True)
    cached = reader.encode(files)
    assert reader._model is None  # every embedding came from disk
    for name in files:
        assert torch.equal(cached[name], fresh[name])
    uncached = _encoder(checkpoint).encode(files)
    for name in files:
        assert torch.equal(uncached[name], fresh[name])
    # the key is the content: a copy of a file under another name is a hit
    copy = tmp_path / "copy.png"
    copy.write_bytes(Path(files["image"][1]).read_bytes())
    assert torch.equal(reader.embed("image", [str(copy)])[0], fresh["image"][1])
    assert isinstance(reader, Embedder)  # PandaGPT can train from the cache


def test_cache_is_invalidated_by_preprocessing_weights_and_content(checkpoint, files, tmp_path):
    cache_dir = str(tmp_path / "cache")
    _encoder(checkpoint, cache_dir=cache_dir).encode({"audio": files["audio"]})
    other_settings = _encoder(checkpoint, cache_dir=cache_dir, cache_only=True, preprocess={"audio": {"clips": 2}})
    with pytest.raises(FileNotFoundError, match=r"2 of 2 audio inputs are not in the embedding cache"):
        other_settings.encode({"audio": files["audio"]})
    os.utime(checkpoint, ns=(1, 1))  # the same path, another file
    with pytest.raises(FileNotFoundError, match="not in the embedding cache"):
        _encoder(checkpoint, cache_dir=cache_dir, cache_only=True).encode({"audio": files["audio"]})
    writer = _encoder(checkpoint, cache_dir=cache_dir)
    writer.encode({"audio": files["audio"]})
    assert len(writer.cache_for("audio")) == 2
    sf.write(files["audio"][0], np.zeros(16000, np.float32), 16000)  # new bytes under the same name
    writer.encode({"audio": files["audio"]})
    assert len(writer.cache_for("audio")) == 3  # the rewritten file is a new entry, not the old embedding


def test_random_weights_are_reproducible_and_keyed_as_such(files, tmp_path):
    first = ImageBindEncoder(preset="tiny", progress=False).encode({"image": files["image"][:1]})["image"]
    second = ImageBindEncoder(preset="tiny", progress=False).encode({"image": files["image"][:1]})["image"]
    assert torch.equal(first, second)
    meta = ImageBindEncoder(preset="tiny").cache_meta("image")
    assert meta["weights"]["checkpoint"] is None and meta["preprocess"]["modality"] == "vision"


def test_expand_files(tmp_path, files):
    folder = str(Path(files["image"][0]).parent)
    assert expand_files([folder]) == sorted(files["image"])
    assert expand_files([folder + "/img[01].png"]) == files["image"][:2]
    with pytest.raises(FileNotFoundError, match="nothing.png: no such file"):
        expand_files([str(tmp_path / "nothing.png")])


def test_unknown_modality_is_refused(checkpoint):
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        _encoder(checkpoint).encode({"smell": ["x"]})


def test_embed_command_builds_cache_and_path_table(checkpoint, files, tmp_path, capsys):
    out, table = tmp_path / "cache", tmp_path / "table.safetensors"
    args = ["embed", "--modality", "image", "--files", json.dumps(files["image"]), "--out", str(out)]
    args += ["--checkpoint", str(checkpoint), "--preset", "tiny", "--table", str(table)]
    main(args)
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"] == 3 and summary["newly_encoded"] == 3 and summary["dim"] == 1024
    main(args)
    assert json.loads(capsys.readouterr().out)["newly_encoded"] == 0  # re-running encodes nothing
    from_table = PrecomputedEmbedder(str(table)).embed("vision", files["image"])
    from_cache = _encoder(checkpoint, cache_dir=str(out), cache_only=True).embed("image", files["image"])
    assert torch.equal(from_table, from_cache)


def test_bad_input_is_a_one_line_error_naming_the_file(checkpoint, tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--modality", "audio", "--files", f"[{bad}]", "--out", str(tmp_path / "c"), "--preset", "tiny"])
    assert exit_info.value.code == 1
    assert "broken.wav" in capsys.readouterr().err


def test_zeroshot_scores_files_against_labels(checkpoint, files, tmp_path, capsys):
    out, plot = tmp_path / "zs.json", tmp_path / "zs.png"
    labels = ["dog", "rain", "engine"]
    main(
        ["zeroshot", "--modality", "audio", "--files", json.dumps(files["audio"]), "--labels", json.dumps(labels)]
        + ["--template", "the sound of {}", "--checkpoint", str(checkpoint), "--preset", "tiny"]
        + ["--out", str(out), "--plot", str(plot)]
    )
    printed = capsys.readouterr().out
    assert "clip0.wav" in printed and "clip1.wav" in printed
    results = json.loads(out.read_text())["results"]
    encoder = _encoder(checkpoint)
    emb = encoder.encode({"audio": files["audio"], "text": [f"the sound of {label}" for label in labels]})
    a = emb["audio"] / emb["audio"].norm(dim=-1, keepdim=True)
    t = emb["text"] / emb["text"].norm(dim=-1, keepdim=True)
    expected = torch.softmax(encoder.text_logit_scale() * (a @ t.T), dim=-1)  # official: scaled cosine, softmax
    got = torch.tensor([[row["probability"][label] for label in labels] for row in results])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert plot.stat().st_size > 1000
