"""Offline multimodal digits: scans as images, names as text, DTMF tones as audio, depth and thermal renders.

scikit-learn's 1,797 real digit scans give paired manifests for binding and labelled ones for evaluation.

Everything is generated deterministically from a seed; nothing is downloaded.

- **audio**: a DTMF key press (ITU-T Q.23; key ``0`` = 941 + 1336 Hz, ``1`` = 697 + 1209 Hz, …) in a 2-s, 16 kHz
  clip. Onset, length, level, phases, ±1.5 % frequency jitter and the white-noise level are drawn per clip
  independently of the digit, so nothing but the two frequencies tells the class. Audio carries no instance
  information: clips are paired with a random scan *of the same digit* (class-paired, as AudioSet clips are paired
  with frames of their own video).
- **depth**: the scan read as a height field (ink = raised), stored as metres in ``.npy``, with sensor noise;
  paired with its own scan (instance-paired, as SUN RGB-D).
- **thermal**: the scan blurred and inverted (a warm background, cool ink) with noise, as 8-bit PNG; instance-paired.
- **text**: the digit's name, ``"seven"``; images are bound to it first (the quickstart's stand-in for OpenCLIP's
  image–text pre-training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from lit_multimodal.files import write_text_atomic

__all__ = ["DIGIT_WORDS", "DTMF", "caption", "dtmf_clip", "write_emergence_data"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: (low, high) DTMF frequencies of the keys 0–9.
DTMF: dict[int, tuple[float, float]] = {
    1: (697, 1209), 2: (697, 1336), 3: (697, 1477),
    4: (770, 1209), 5: (770, 1336), 6: (770, 1477),
    7: (852, 1209), 8: (852, 1336), 9: (852, 1477),
    0: (941, 1336),
}  # fmt: skip
SAMPLE_RATE = 16000
CLIP_SECONDS = 2.0
SIDE = 32
VERSION = 4


def caption(digit: int) -> str:
    """The text of a digit: its name, ``"seven"`` (the class name itself is the zero-shot template ``{}``)."""
    return DIGIT_WORDS[digit]


def dtmf_clip(digit: int, rng: np.random.Generator, noise: float = 0.5) -> np.ndarray:
    """A 2-s float32 clip with one DTMF key press of ``digit`` at a random onset, level and jitter, plus noise."""
    n = int(SAMPLE_RATE * CLIP_SECONDS)
    t = np.arange(n) / SAMPLE_RATE
    length = rng.uniform(0.15, 0.6)
    onset = rng.uniform(0.0, CLIP_SECONDS - length)
    envelope = ((t >= onset) & (t < onset + length)).astype(np.float64)
    tone = sum(np.sin(2 * np.pi * f * rng.uniform(0.985, 1.015) * t + rng.uniform(0, 2 * np.pi)) for f in DTMF[digit])
    level = rng.uniform(0.1, 0.4)
    clip = level * envelope * tone / 2 + noise * level * rng.uniform(0.5, 1.5) * rng.standard_normal(n)
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def _upsample(array: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize((SIDE, SIDE), Image.BILINEAR))


def _depth(scan: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height = _upsample(scan / 255.0)
    return (1.5 - 0.4 * height + rng.normal(0, 0.01, height.shape)).astype(np.float32)


def _thermal(scan: np.ndarray, rng: np.random.Generator) -> Image.Image:
    gray = Image.fromarray(scan, mode="L").resize((SIDE, SIDE), Image.BILINEAR).filter(ImageFilter.GaussianBlur(2))
    warm = 200.0 - 0.6 * np.asarray(gray, dtype=np.float64) + rng.normal(0, 8, (SIDE, SIDE))
    return Image.fromarray(np.clip(warm, 0, 255).astype(np.uint8), mode="L")


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_emergence_data(
    root: str | Path,
    seed: int = 0,
    noise: float = 0.5,
    qa_per_digit: int = 20,
    instructions_per_digit: int | None = None,
) -> Path:
    """Writes the files and manifests under ``root`` (idempotent: a finished folder is left as it is).

    Scans are split 50/50 per digit (``train``/``val``); every manifest uses that split. Files:
    ``images/``, ``audio/``, ``depth/``, ``thermal/``; binding manifests ``bind_image_text.jsonl`` (image bound to
    the caption text), ``bind_{audio,depth,thermal}_image.jsonl``; labelled held-out manifests
    ``eval_{image,audio,depth,thermal}.jsonl`` (``file``, ``label``); PandaGPT data ``instructions.json``
    (LLaVA layout; train-split images only, "This is the digit 7.") and ``qa.jsonl`` (held-out files of every
    modality).

    Args:
        root: output folder.
        seed: seed of the split, pairing and every random nuisance.
        noise: white-noise level of the tones relative to the tone level.
        qa_per_digit: held-out questions per digit and modality in ``qa.jsonl``.
        instructions_per_digit: training images per digit in ``instructions.json`` (None: every train scan).

    Returns:
        ``root``.
    """
    from lit_multimodal.quickstart.digits import digit_image, load_digits_arrays

    root = Path(root).expanduser()
    done = root / "done.json"
    settings = {"version": VERSION, "seed": seed, "noise": noise, "qa": qa_per_digit, "instr": instructions_per_digit}
    if done.is_file() and json.loads(done.read_text()) == settings:
        return root
    for sub in ("images", "audio", "depth", "thermal"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    import soundfile

    scans, labels = load_digits_arrays()
    rng = np.random.default_rng(seed)
    split = np.empty(len(labels), dtype=object)
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        split[idx[: len(idx) // 2]] = "train"
        split[idx[len(idx) // 2 :]] = "val"
    files: dict[str, list[str]] = {m: [] for m in ("image", "audio", "depth", "thermal")}
    for i, (scan, digit) in enumerate(zip(scans, labels, strict=True)):
        name = f"{i:04d}"
        files["image"].append(f"images/{name}.png")
        digit_image(scan).save(root / files["image"][-1])
        files["depth"].append(f"depth/{name}.npy")
        np.save(root / files["depth"][-1], _depth(scan, rng))
        files["thermal"].append(f"thermal/{name}.png")
        _thermal(scan, rng).save(root / files["thermal"][-1])
        files["audio"].append(f"audio/{name}.wav")
        soundfile.write(root / files["audio"][-1], dtmf_clip(int(digit), rng, noise), SAMPLE_RATE, subtype="PCM_16")

    words = [DIGIT_WORDS[d] for d in labels]
    _write_lines(
        root / "bind_image_text.jsonl",
        [
            {"anchor": caption(int(d)), "other": files["image"][i], "label": words[i], "split": split[i]}
            for i, d in enumerate(labels)
        ],
    )
    # Class-paired audio: each clip with a random scan of its digit from the same split.
    same = {(s, d): np.flatnonzero((split == s) & (labels == d)) for s in ("train", "val") for d in range(10)}
    _write_lines(
        root / "bind_audio_image.jsonl",
        [
            {
                "anchor": files["image"][int(rng.choice(same[(split[i], int(d))]))],
                "other": files["audio"][i],
                "label": words[i],
                "split": split[i],
            }
            for i, d in enumerate(labels)
        ],
    )
    for modality in ("depth", "thermal"):
        _write_lines(
            root / f"bind_{modality}_image.jsonl",
            [
                {"anchor": files["image"][i], "other": files[modality][i], "label": words[i], "split": split[i]}
                for i in range(len(labels))
            ],
        )
    val = np.flatnonzero(split == "val")
    for modality in files:
        _write_lines(root / f"eval_{modality}.jsonl", [{"file": files[modality][i], "label": words[i]} for i in val])
    qa = []
    for modality in files:
        for digit in range(10):
            for i in np.flatnonzero((split == "val") & (labels == digit))[:qa_per_digit]:
                qa.append(
                    {
                        "modality": modality,
                        "file": files[modality][i],
                        "question": "What digit is this?",
                        "answer": words[i],
                    }
                )
    _write_lines(root / "qa.jsonl", qa)
    instructions = []
    for digit in range(10):
        for k, i in enumerate(np.flatnonzero((split == "train") & (labels == digit))[:instructions_per_digit]):
            instructions.append(
                {
                    "image": Path(files["image"][i]).name,
                    "conversations": [
                        {
                            "from": "human",
                            "value": ("What digit is this?", "Which number is shown in the image?")[k % 2],
                        },
                        {"from": "gpt", "value": f"This is the digit {digit}."},
                    ],
                }
            )
    (root / "instructions.json").write_text(json.dumps(instructions, indent=1))
    done.write_text(json.dumps(settings))
    return root
