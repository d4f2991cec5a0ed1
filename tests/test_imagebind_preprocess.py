"""ImageBind input loaders, checked on files written here against independent references.

The references are written from the definitions (Kaldi's fbank in numpy, hand-computed pixels, disparities and crop
offsets), not with the loaders' helpers.
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from lit_multimodal.multimodal.imagebind.preprocess import (
    ENCODER_KEY,
    LOADERS,
    PREPROCESS_SETTINGS,
    InputError,
    kaldi_fbank,
    load_audio,
    load_depth,
    load_imu,
    load_inputs,
    load_text,
    load_thermal,
    load_video,
    load_vision,
    preprocess_settings,
)
from lit_multimodal.multimodal.imagebind.preprocess.audio import read_audio
from lit_multimodal.multimodal.imagebind.preprocess.sampling import constant_clips_per_video
from lit_multimodal.multimodal.imagebind.preprocess.video import clip_frame_indices, spatial_crops

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
AUDIO_MEAN, AUDIO_STD = -4.268, 9.138


# ----------------------------------------------------------------------------------------------------------------------
# Independent numpy Kaldi fbank (torchaudio.compliance.kaldi.fbank with ImageBind's arguments), frame by frame.
# ----------------------------------------------------------------------------------------------------------------------
def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _inv_mel(m):
    return 700.0 * (np.exp(np.asarray(m, dtype=np.float64) / 1127.0) - 1.0)


def reference_fbank(x, sr=16000, n_mels=128, window="hanning", low=20.0, high=0.0, preemph=0.97):
    x = np.asarray(x, dtype=np.float64)
    win_len, shift = int(sr * 0.025), int(sr * 0.010)
    n_fft = 1
    while n_fft < win_len:
        n_fft *= 2
    n = np.arange(win_len)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (win_len - 1))
    w = {"hanning": hann, "povey": hann**0.85, "hamming": 0.54 - 0.46 * np.cos(2 * np.pi * n / (win_len - 1))}[window]
    nyq = sr / 2
    high = high if high > 0 else nyq + high
    edges = np.linspace(_mel(low), _mel(high), n_mels + 2)
    banks = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        for k in range(n_fft // 2):  # the Nyquist bin keeps weight 0
            mk = _mel(k * sr / n_fft)
            if edges[m] < mk <= edges[m + 1]:
                banks[m, k] = (mk - edges[m]) / (edges[m + 1] - edges[m])
            elif edges[m + 1] < mk < edges[m + 2]:
                banks[m, k] = (edges[m + 2] - mk) / (edges[m + 2] - edges[m + 1])
    out = []
    for i in range(1 + (len(x) - win_len) // shift):
        frame = x[i * shift : i * shift + win_len].copy()
        frame -= frame.mean()
        emph = np.empty_like(frame)
        emph[0] = frame[0] - preemph * frame[0]
        emph[1:] = frame[1:] - preemph * frame[:-1]
        padded = np.zeros(n_fft)
        padded[:win_len] = emph * w
        power = np.abs(np.fft.rfft(padded)) ** 2
        out.append(np.log(np.maximum(banks @ power, np.finfo(np.float32).eps)))
    return np.array(out)


def write_wav(path: Path, data: np.ndarray, sr: int, fmt: str = "WAV") -> Path:
    pcm = np.clip(np.round(np.asarray(data) * 32767), -32768, 32767).astype(np.int16)  # same samples for any format
    soundfile.write(str(path), pcm, sr, subtype="PCM_16", format=fmt)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# vision / thermal
# ----------------------------------------------------------------------------------------------------------------------
def test_vision_uniform_colour_is_exactly_normalised(tmp_path):
    rgb = (200, 100, 50)
    Image.new("RGB", (300, 200), rgb).save(tmp_path / "a.png")
    Image.new("L", (250, 260), 77).save(tmp_path / "g.jpg", quality=100)
    x = load_vision([tmp_path / "a.png", tmp_path / "g.jpg"])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    expected = (np.array(rgb) / 255.0 - CLIP_MEAN) / CLIP_STD
    for c in range(3):
        assert torch.allclose(x[0, c], torch.full((224, 224), float(expected[c])), atol=1e-5)
    # grayscale is converted to RGB (equal channels before normalisation)
    raw = x[1].numpy() * CLIP_STD[:, None, None] + CLIP_MEAN[:, None, None]
    assert np.allclose(raw, raw[0:1], atol=1e-5)


def test_vision_short_side_resize_and_centre_crop(tmp_path):
    # 448x224: short side already 224 (no resampling), centre crop keeps x in [112, 336)
    img = np.zeros((224, 448, 3), np.uint8)
    img[:, :224] = (255, 0, 0)
    img[:, 224:] = (0, 0, 255)
    Image.fromarray(img).save(tmp_path / "wide.png")
    x = load_vision([tmp_path / "wide.png"])[0]
    red = (np.array([1.0, 0, 0]) - CLIP_MEAN) / CLIP_STD
    blue = (np.array([0, 0, 1.0]) - CLIP_MEAN) / CLIP_STD
    assert np.allclose(x[:, 100, 0].numpy(), red, atol=1e-5)
    assert np.allclose(x[:, 100, 111].numpy(), red, atol=1e-5)
    assert np.allclose(x[:, 100, 112].numpy(), blue, atol=1e-5)
    assert np.allclose(x[:, 100, 223].numpy(), blue, atol=1e-5)


def test_thermal_is_grey_in_unit_range(tmp_path):
    Image.new("L", (320, 256), 128).save(tmp_path / "t.png")
    Image.new("RGB", (240, 240), (90, 90, 90)).save(tmp_path / "c.png")
    x = load_thermal([tmp_path / "t.png", tmp_path / "c.png"])
    assert x.shape == (2, 1, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full_like(x[0], 128 / 255), atol=1e-6)
    assert torch.allclose(x[1], torch.full_like(x[1], 90 / 255), atol=1e-6)


def test_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    for fn in (load_vision, load_thermal):
        with pytest.raises(InputError, match="bad.png"):
            fn([bad])
        with pytest.raises(InputError, match="missing.png: file not found"):
            fn([tmp_path / "missing.png"])


# ----------------------------------------------------------------------------------------------------------------------
# depth
# ----------------------------------------------------------------------------------------------------------------------
BF = 0.075 * 518.857901  # default baseline (m) times focal length (px)


def test_depth_known_depth_gives_expected_disparity(tmp_path):
    np.save(tmp_path / "d.npy", np.full((240, 320), 2.0, np.float32))
    Image.fromarray(np.full((240, 320), 2000, np.uint16)).save(tmp_path / "d16.png")
    rotated = ((2000 << 3) | (2000 >> 13)) & 0xFFFF  # SUN RGB-D: millimetres rotated left by 3 bits
    Image.fromarray(np.full((240, 320), rotated, np.uint16)).save(tmp_path / "sun.png")
    Image.fromarray(np.full((240, 320), 2.0, np.float32)).save(tmp_path / "d.tiff")

    raw = load_depth([tmp_path / "d.npy", tmp_path / "d16.png", tmp_path / "d.tiff"], normalize=False)
    assert raw.shape == (3, 1, 224, 224) and raw.dtype == torch.float32
    assert torch.allclose(raw[:, 0, 112, 112], torch.full((3,), BF / 2.0), rtol=1e-5)
    sun = load_depth([tmp_path / "sun.png"], png_bit_shift=3, normalize=False)
    assert sun[0, 0, 112, 112].item() == pytest.approx(BF / 2.0, rel=1e-5)

    norm = load_depth([tmp_path / "d.npy"])  # default: DepthNorm(75) + (x - 0.0418) / 0.0295
    expected = (min(BF / 2.0, 75.0) / 75.0 - 0.0418) / 0.0295
    assert norm[0, 0, 112, 112].item() == pytest.approx(expected, rel=1e-5)
    # custom intrinsics and clamping
    far = load_depth([tmp_path / "d.npy"], baseline=0.1, focal_length=500.0, max_depth=1.0, normalize=False)
    assert far[0, 0, 5, 5].item() == pytest.approx(0.1 * 500.0 / 1.0, rel=1e-5)


def test_depth_invalid_pixels_become_zero_disparity(tmp_path):
    d = np.full((224, 448), 1.5, np.float32)
    d[:, :224] = 0.0
    d[:10, 300:] = np.nan
    np.save(tmp_path / "holes.npy", d)
    x = load_depth([tmp_path / "holes.npy"], normalize=False)[0, 0]  # centre crop keeps columns 112..335
    assert torch.all(x[:, :100] == 0)
    assert x[112, 200].item() == pytest.approx(BF / 1.5, rel=1e-5)


def test_depth_errors(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "rgb.png")
    Image.new("L", (64, 64), 7).save(tmp_path / "eight.png")
    np.save(tmp_path / "rgb.npy", np.zeros((64, 64, 3), np.float32))
    np.save(tmp_path / "vec.npy", np.zeros((64,), np.float32))
    (tmp_path / "junk.png").write_bytes(b"\x00\x01junk")
    with pytest.raises(InputError, match=r"rgb\.png: 'RGB' colour image .*single-channel depth map expected"):
        load_depth([tmp_path / "rgb.png"])
    with pytest.raises(InputError, match=r"eight\.png: 'L' image with 8 bits per pixel, a 16-bit depth image"):
        load_depth([tmp_path / "eight.png"])
    with pytest.raises(InputError, match=r"rgb\.npy: array of shape \(64, 64, 3\) looks like a 3-channel RGB image"):
        load_depth([tmp_path / "rgb.npy"])
    with pytest.raises(InputError, match=r"vec\.npy: array of shape \(64,\)"):
        load_depth([tmp_path / "vec.npy"])
    with pytest.raises(InputError, match=r"junk\.png: not a readable image"):
        load_depth([tmp_path / "junk.png"])
    with pytest.raises(InputError, match=r"nope\.npy: file not found"):
        load_depth([tmp_path / "nope.npy"])


# ----------------------------------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------------------------------
def _clip_vocab_ids(words):
    """Ids of whole words in CLIP's BPE vocabulary, built from the vocabulary file as CLIP defines it."""
    import open_clip

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = [chr(c) for c in cs]
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    index = {v: i for i, v in enumerate(vocab)}
    return [index[w + "</w>"] for w in words]


def test_text_ids_padding_and_special_tokens():
    x = load_text(["a photo of a dog", "Hello   WORLD"])
    assert x.shape == (2, 77) and x.dtype == torch.long
    ids = _clip_vocab_ids(["a", "photo", "of", "a", "dog"])
    assert x[0, :7].tolist() == [49406, *ids, 49407]
    assert torch.all(x[0, 7:] == 0)
    assert x[1, :4].tolist() == [49406, *_clip_vocab_ids(["hello", "world"]), 49407]  # lowercased, spaces collapsed


def test_text_overlong_keeps_eot_like_official_head():
    from open_clip.tokenizer import SimpleTokenizer

    text = " ".join(f"word{i}" for i in range(200))
    x = load_text([text])
    body = SimpleTokenizer().encode(text)
    assert len(body) > 76
    assert x[0].tolist() == [49406, *body[:75], 49407]  # official HEAD: ([SOT] + tokens)[:76] + [EOT]
    assert int(x[0].argmax()) == 76
    exact = " ".join(["dog"] * 75)  # [SOT] + 75 + [EOT] = 77: fits without truncation
    y = load_text([exact])[0]
    assert y[0] == 49406 and y[76] == 49407 and torch.all(y[1:76] == _clip_vocab_ids(["dog"])[0])
    with pytest.raises(TypeError):
        load_text("a single string")


# ----------------------------------------------------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", ["hanning", "povey"])
def test_kaldi_fbank_matches_numpy_reference(window):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4800).astype(np.float32) * 0.1  # 0.3 s at 16 kHz
    ours = kaldi_fbank(
        torch.from_numpy(x).unsqueeze(0),
        sample_frequency=16000,
        num_mel_bins=128,
        window_type=window,
        htk_compat=True,
        use_energy=False,
        dither=0.0,
    )
    ref = reference_fbank(x, window=window)
    assert ours.shape == ref.shape == (28, 128)
    assert np.abs(ours.numpy() - ref).max() < 1e-3
    # in float64 the implementation agrees with the definition to rounding
    ours64 = kaldi_fbank(torch.from_numpy(x.astype(np.float64)), num_mel_bins=128, window_type=window)
    assert np.abs(ours64.numpy() - ref).max() < 1e-8


def test_kaldi_fbank_pure_tone_lands_in_its_mel_bin():
    sr, f0 = 16000, 1000.0
    t = np.arange(8000) / sr
    x = torch.from_numpy((0.5 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)).unsqueeze(0)
    fb = kaldi_fbank(x, sample_frequency=sr, num_mel_bins=128, window_type="hanning")
    centres = _inv_mel(np.linspace(_mel(20.0), _mel(8000.0), 130)[1:-1])
    assert int(fb.mean(0).argmax()) == int(np.abs(centres - f0).argmin())


def test_kaldi_fbank_too_short_and_channel():
    with pytest.raises(ValueError):
        kaldi_fbank(torch.zeros(1, 399), num_mel_bins=128)
    two = torch.randn(2, 1600)
    assert torch.equal(kaldi_fbank(two, channel=1), kaldi_fbank(two[1:], channel=0))
    assert torch.equal(kaldi_fbank(two), kaldi_fbank(two[:1]))  # channel -1 means 0


class _PytorchvideoConstantClips:
    """pytorchvideo's stateful ``ConstantClipsPerVideoSampler`` (one augmentation per clip), transcribed from
    ``pytorchvideo/data/clip_sampling.py`` at the commit ImageBind's requirements pin."""

    def __init__(self, clip_duration, clips_per_video):
        self.clip_duration = Fraction(clip_duration)
        self.clips_per_video = clips_per_video
        self.index = 0

    def __call__(self, last_clip_time, video_duration):
        max_possible_start = Fraction(max(video_duration - self.clip_duration, 0))
        uniform_clip = Fraction(max_possible_start, max(self.clips_per_video - 1, 1))
        start = uniform_clip * self.index
        self.index += 1
        is_last = self.index >= self.clips_per_video or uniform_clip * self.index > max_possible_start
        if is_last:
            self.index = 0
        return start, start + self.clip_duration, is_last


def _official_clip_timepoints(duration, clip_duration, clips):
    """ImageBind's ``get_clip_timepoints``: call the sampler until it reports the last clip."""
    sampler, points, end, is_last = _PytorchvideoConstantClips(clip_duration, clips), [], 0.0, False
    while not is_last:
        start, end, is_last = sampler(end, duration)
        points.append((start, end))
    return points


@pytest.mark.parametrize("clips", [1, 2, 3, 5])
@pytest.mark.parametrize("duration", [0.5, 1.5, 2.0, 3.5, 7.0, 10.3])
def test_clip_placement_matches_pytorchvideo(duration, clips):
    got = constant_clips_per_video(duration, 2, clips)
    assert got == _official_clip_timepoints(duration, 2, clips)
    assert len(got) == clips and got[0][0] == 0
    if duration > 2 and clips > 1:
        assert float(got[-1][1]) == pytest.approx(duration)  # the last clip ends at the end of the recording


def test_clip_placement():
    for d in (1.5, 2.0):
        assert constant_clips_per_video(d, 2, 3) == [(0, 2)] * 3
    # the example of the official preprocessing: 3.5 s, three clips of 2 s
    assert constant_clips_per_video(3.5, 2, 3) == [(0, 2), (Fraction(3, 4), Fraction(11, 4)), (Fraction(3, 2), 3.5)]
    clips = constant_clips_per_video(7.0, 2, 3)
    assert clips == [(0, 2), (Fraction(5, 2), Fraction(9, 2)), (5, 7)]
    assert [int(s * 16000) for s, _ in clips] == [0, 40000, 80000]


def test_audio_end_to_end_matches_reference(tmp_path):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(32000) * 0.1).clip(-1, 1)  # exactly 2.0 s mono at 16 kHz
    path = write_wav(tmp_path / "mono.wav", data, 16000)
    x = load_audio([path])
    assert x.shape == (1, 3, 1, 128, 204) and x.dtype == torch.float32
    # <= 2 s: three clips of the same samples (equal up to the rounding of the repeated in-place mean removal)
    assert torch.allclose(x[0, 0], x[0, 1], atol=1e-4) and torch.allclose(x[0, 0], x[0, 2], atol=1e-4)
    read, _ = soundfile.read(str(path), dtype="float32")
    ref = reference_fbank(read - read.mean()).T  # (128, 198)
    assert ref.shape == (128, 198)
    fbank = x[0, 0, 0].numpy() * AUDIO_STD + AUDIO_MEAN
    # float32 (as torchaudio computes) against a float64 reference: 1e-3 except in near-empty bins (log < -13)
    assert np.abs(fbank[:, :198] - ref)[ref > -13].max() < 1e-3
    assert np.abs(fbank[:, :198] - ref).max() < 5e-3
    pad = (0 - AUDIO_MEAN) / AUDIO_STD
    assert pad == pytest.approx(0.467, abs=1e-3)
    assert np.allclose(x[0, 0, 0, :, 198:].numpy(), pad, atol=1e-6)

    write_wav(tmp_path / "mono.flac", data, 16000, fmt="FLAC")
    assert torch.equal(load_audio([tmp_path / "mono.flac"]), x)


def test_audio_stereo_44k_uses_channel_0_and_resamples(tmp_path):
    rng = np.random.default_rng(2)
    sr, n = 44100, 44100 * 3
    ch0 = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sr) + 0.05 * rng.standard_normal(n)
    a = write_wav(tmp_path / "a.wav", np.stack([ch0, 0.2 * rng.standard_normal(n).clip(-1, 1)], 1), sr)
    b = write_wav(tmp_path / "b.wav", np.stack([ch0, 0.5 + 0.1 * rng.standard_normal(n).clip(-1, 1)], 1), sr)
    wave = read_audio(a)
    assert wave.shape == (2, 48000) and wave.dtype == torch.float32  # ceil(132300 * 160 / 441)
    xa, xb = load_audio([a]), load_audio([b])
    assert xa.shape == (1, 3, 1, 128, 204)
    assert torch.isfinite(xa).all()
    # channel 1 only shifts the global mean, which the per-frame DC removal cancels in the first clip (the later,
    # overlapping clips see the first clip's in-place mean removal as a step, as in the official loader)
    assert (xa[:, 0] - xb[:, 0]).abs().max() * AUDIO_STD < 1e-3
    assert (xa[:, 1] - xb[:, 1]).abs().max() * AUDIO_STD > 1e-2
    centres = _inv_mel(np.linspace(_mel(20.0), _mel(8000.0), 130)[1:-1])
    assert int(xa[0, 0, 0, :, :198].mean(1).argmax()) == int(np.abs(centres - 440).argmin())


def test_audio_short_clip_pads_and_warns(tmp_path, caplog):
    path = write_wav(tmp_path / "short.wav", 0.1 * np.sin(np.arange(8000) / 5.0), 16000)  # 0.5 s: 48 frames
    with caplog.at_level(logging.WARNING):
        x = load_audio([path])
    assert "Large gap between audio n_frames(48)" in caplog.text
    assert np.allclose(x[0, :, 0, :, 48:].numpy(), (0 - AUDIO_MEAN) / AUDIO_STD, atol=1e-6)
    assert not np.allclose(x[0, 0, 0, :, 47].numpy(), (0 - AUDIO_MEAN) / AUDIO_STD)


def test_audio_errors_name_the_file(tmp_path):
    write_wav(tmp_path / "tiny.wav", np.zeros(160), 16000)  # 10 ms < one 25 ms frame
    with pytest.raises(InputError, match=r"tiny\.wav: audio has 0\.0100 s .* at least 0\.025 s \(one 25 ms"):
        load_audio([tmp_path / "tiny.wav"])
    write_wav(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    with pytest.raises(InputError, match=r"empty\.wav: audio is empty"):
        load_audio([tmp_path / "empty.wav"])
    (tmp_path / "junk.wav").write_bytes(b"RIFF....junk")
    with pytest.raises(InputError, match=r"junk\.wav: not a readable audio file"):
        load_audio([tmp_path / "junk.wav"])
    with pytest.raises(InputError, match=r"gone\.flac: file not found"):
        load_audio([tmp_path / "gone.flac"])


# ----------------------------------------------------------------------------------------------------------------------
# video
# ----------------------------------------------------------------------------------------------------------------------
def write_video(path: Path, frames: int, fps: int = 10, size=(320, 240)) -> Path:
    """Frame i: grey background 20 + 5 i (identifies the frame), white 40x40 square at x = 6 i."""
    w, h = size
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.bit_rate = 8_000_000
    for i in range(frames):
        img = np.full((h, w, 3), 20 + 5 * i, np.uint8)
        img[100:140, 6 * i : 6 * i + 40] = 255
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def _frame_ids(entry: torch.Tensor) -> list[int]:
    """Frame index of each of the T frames of a (3, T, 224, 224) entry, read from the background grey."""
    raw = entry * torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1, 1, 1)
    raw = (raw + torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1, 1, 1)) * 255
    level = raw[:, :, 5:40, :].mean(dim=(0, 2, 3))
    return [round((v - 20) / 5) for v in level.tolist()]


@pytest.fixture(scope="module")
def video_4s(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=40)


def test_video_shape_frames_and_crops(video_4s):
    x = load_video([video_4s])
    assert x.shape == (1, 15, 3, 2, 224, 224) and x.dtype == torch.float32
    # 4 s at 10 fps: clip k spans [0.5 k, 0.5 k + 2) s = frames 5k .. 5k + 19 (the last clip ends on the last
    # frame); keeps the first and the last
    for k in range(5):
        for c in range(3):
            assert _frame_ids(x[0, 3 * k + c]) == [5 * k, 5 * k + 19], (k, c)

    # crops: 240x320 -> 224x298 (floor(320 / 240 * 224)); x offsets 0, ceil(74 / 2) = 37, 74
    container = av.open(str(video_4s))
    decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    container.close()
    k = 2
    frames = torch.from_numpy(np.stack([decoded[5 * k], decoded[5 * k + 19]])).permute(3, 0, 1, 2).float() / 255
    scaled = torch.nn.functional.interpolate(frames, size=(224, 298), mode="bilinear", align_corners=False)
    scaled = (scaled - torch.tensor(CLIP_MEAN).float().view(3, 1, 1, 1)) / torch.tensor(CLIP_STD).float().view(
        3, 1, 1, 1
    )
    for c, offset in enumerate((0, 37, 74)):
        assert torch.allclose(x[0, 3 * k + c], scaled[..., offset : offset + 224], atol=1e-5), offset


def test_video_shorter_than_a_clip_repeats_it(tmp_path):
    path = write_video(tmp_path / "short.mp4", frames=15)  # 1.5 s
    x = load_video([path], crops=1)
    assert x.shape == (1, 5, 3, 2, 224, 224)
    for k in range(5):
        assert _frame_ids(x[0, k]) == [0, 14]


def test_spatial_crops_portrait_offsets():
    rows = torch.arange(300, dtype=torch.float32).view(1, 1, 300, 1).expand(3, 2, 300, 224)
    crops = spatial_crops(rows, 224, 3)
    assert [int(c[0, 0, 0, 0]) for c in crops] == [0, 38, 76]  # 0, ceil(76 / 2), 300 - 224
    assert [int(c[0, 0, 0, 0]) for c in spatial_crops(rows, 224, 1)] == [38]


def test_video_errors_name_the_file(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"definitely not a video")
    with pytest.raises(InputError, match=r"junk\.mp4: not a readable video file"):
        load_video([tmp_path / "junk.mp4"])
    write_wav(tmp_path / "sound.wav", np.zeros(1600), 16000)
    with pytest.raises(InputError, match=r"sound\.wav: no video stream"):
        load_video([tmp_path / "sound.wav"])
    with pytest.raises(InputError, match=r"missing\.mp4: file not found"):
        load_video([tmp_path / "missing.mp4"])
    # 3 frames at 0.2 fps (t = 0, 5, 10 s) = 15 s: clips start every 13 / 4 s; [6.5 s, 8.5 s) holds no frame
    with pytest.raises(InputError, match=r"slow\.mp4: no frame in the clip \[6\.500 s, 8\.500 s\) .* of 15\.000 s"):
        clip_frame_indices(3, 0.2, clips=5, clip_duration=2.0, frames_per_clip=2, path="slow.mp4")


# ----------------------------------------------------------------------------------------------------------------------
# IMU
# ----------------------------------------------------------------------------------------------------------------------
def test_imu_npy_cut_pad_and_resample(tmp_path):
    rng = np.random.default_rng(3)
    long = rng.standard_normal((6, 2500)).astype(np.float32)
    short = rng.standard_normal((1500, 6)).astype(np.float32)
    np.save(tmp_path / "long.npy", long)
    np.save(tmp_path / "short.npy", short)
    x = load_imu([tmp_path / "long.npy", tmp_path / "short.npy"])
    assert x.shape == (2, 6, 2000) and x.dtype == torch.float32
    assert np.array_equal(x[0].numpy(), long[:, :2000])
    assert np.array_equal(x[1, :, :1500].numpy(), short.T)
    assert torch.all(x[1, :, 1500:] == 0)

    ramp = np.tile(np.arange(11, dtype=np.float64), (6, 1)) * np.arange(1, 7)[:, None]
    np.save(tmp_path / "ramp.npy", ramp)
    r = load_imu([tmp_path / "ramp.npy"], resample=True)[0].double()
    expected = np.linspace(0, 10, 2000)[None, :] * np.arange(1, 7)[:, None]
    assert np.allclose(r.numpy(), expected, atol=1e-5)


def test_imu_csv_with_header(tmp_path):
    rows = np.arange(600, dtype=np.float64).reshape(100, 6) / 10
    lines = ["ax,ay,az,gx,gy,gz"] + [",".join(f"{v:g}" for v in row) for row in rows]
    (tmp_path / "imu.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "nohead.csv").write_text("\n".join(lines[1:]) + "\n")
    x = load_imu([tmp_path / "imu.csv", tmp_path / "nohead.csv"])
    assert x.shape == (2, 6, 2000)
    assert np.allclose(x[0, :, :100].numpy(), rows.T.astype(np.float32))
    assert torch.equal(x[0], x[1])
    assert torch.all(x[:, :, 100:] == 0)


def test_imu_errors_name_the_file(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 100)))
    with pytest.raises(InputError, match=r"bad\.npy: IMU array of shape \(3, 100\), expected \(6, N\) or \(N, 6\)"):
        load_imu([tmp_path / "bad.npy"])
    (tmp_path / "cell.csv").write_text("1,2,3,4,5,6\n1,2,3,4,5,6\n1,2,x,4,5,6\n")
    with pytest.raises(InputError, match=r"cell\.csv: line 3: non-numeric value 'x'"):
        load_imu([tmp_path / "cell.csv"])
    (tmp_path / "cols.csv").write_text("1,2,3,4,5\n")
    with pytest.raises(InputError, match=r"cols\.csv: line 1 has 5 columns, 6 expected"):
        load_imu([tmp_path / "cols.csv"])
    (tmp_path / "imu.txt").write_text("1 2 3 4 5 6\n")
    with pytest.raises(InputError, match=r"imu\.txt: unknown IMU file type"):
        load_imu([tmp_path / "imu.txt"])
    with pytest.raises(InputError, match=r"none\.npy: file not found"):
        load_imu([tmp_path / "none.npy"])


# ----------------------------------------------------------------------------------------------------------------------
# registry and settings
# ----------------------------------------------------------------------------------------------------------------------
def test_registry_settings_and_dispatch(tmp_path):
    assert set(LOADERS) == {"vision", "text", "audio", "depth", "thermal", "imu"}
    assert ENCODER_KEY["video"] == "vision"
    assert set(PREPROCESS_SETTINGS) == set(LOADERS) | {"video"}
    for modality, settings in PREPROCESS_SETTINGS.items():
        json.dumps(settings)
        assert settings["modality"] == modality and "version" in settings
        assert all(not isinstance(v, dict) for v in settings.values())
    assert PREPROCESS_SETTINGS["audio"]["target_length"] == 204
    assert preprocess_settings("audio", clips=5) != PREPROCESS_SETTINGS["audio"]
    assert preprocess_settings("depth", normalize=False)["normalize"] is False
    with pytest.raises(TypeError):
        preprocess_settings("audio", nonsense=1)
    with pytest.raises(KeyError):
        load_inputs("smell", [])
    assert load_inputs("text", ["a dog"]).shape == (1, 77)
    np.save(tmp_path / "i.npy", np.ones((6, 10)))
    assert load_inputs("imu", [tmp_path / "i.npy"], steps=16).shape == (1, 6, 16)
    assert math.isclose(PREPROCESS_SETTINGS["vision"]["mean"][0], 0.48145466)


def test_settings_cover_every_loader_option():
    # every option a loader takes must be part of its settings (the cache key), with the loader's own default
    for modality, loader in {**LOADERS, "video": load_video}.items():
        params = list(inspect.signature(loader).parameters.values())[1:]
        settings = PREPROCESS_SETTINGS[modality]
        assert {p.name for p in params} <= set(settings), modality
        for p in params:
            assert settings[p.name] == p.default, (modality, p.name)
