"""Checks of the demo's uploads: what kind of file each one is (from its content, not its name) and its limits.

Every refusal is an :class:`~lit_multimodal.multimodal.imagebind.preprocess.errors.InputError` whose message
starts with the file's name and says what the slot takes or which limit it broke.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.chat import MODALITY_ORDER

__all__ = ["SLOT_KINDS", "DemoLimits", "FileInfo", "check_input_file", "format_minutes", "sniff_file"]

#: What each upload slot accepts (kinds found by :func:`sniff_file`).
SLOT_KINDS: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "video": ("video",),
    "audio": ("audio",),
    "thermal": ("image",),
    "depth": ("image", "npy"),
    "imu": ("npy", "csv"),
}
KIND_WORDS = {
    "image": "an image (PNG, JPEG, ...)",
    "video": "a video (MP4, AVI, WebM, ...)",
    "audio": "an audio file (WAV, FLAC, OGG)",
    "npy": "a NumPy .npy array",
    "csv": "a CSV table",
}
SLOT_WORDS = {
    "image": "an image (PNG, JPEG, ...)",
    "video": "a video (MP4, AVI, WebM, ...)",
    "audio": "an audio file (WAV, FLAC, OGG)",
    "thermal": "a thermal image (PNG, JPEG, ...)",
    "depth": "a depth map (image or .npy array)",
    "imu": "an IMU recording (.npy or .csv, 6 channels)",
}


@dataclass(frozen=True)
class DemoLimits:
    """Limits on uploaded inputs; longer recordings are refused with a message naming the file and the limit.

    Args:
        max_audio_seconds: longest audio accepted (ImageBind samples 3 clips of 2 s from any length, so a longer
            file only costs decoding time).
        max_video_seconds: longest video accepted (every frame is decoded once).
    """

    max_audio_seconds: float = 600.0
    max_video_seconds: float = 300.0


@dataclass(frozen=True)
class FileInfo:
    """What :func:`sniff_file` found in a file.

    Args:
        kind: ``image``, ``audio``, ``video``, ``npy``, ``csv``, or None for an unreadable file.
        seconds: the duration of a recording, when known.
        readable: whether the project's loaders read it (audio that only FFmpeg opens is not).
        detail: the container format of such audio.
    """

    kind: str | None
    seconds: float | None = None
    readable: bool = True
    detail: str = ""


def _video_seconds(container: Any) -> float | None:
    if container.duration:
        return float(container.duration) / 1_000_000
    stream = container.streams.video[0]
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return None


def sniff_file(path: str | os.PathLike[str]) -> FileInfo:
    """Which kind of file ``path`` is, from its content (not its name).

    Args:
        path: the file.

    Returns:
        A :class:`FileInfo`; ``kind`` is None when no reader recognises the file.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"\x93NUMPY"):
        return FileInfo("npy")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
        return FileInfo("image")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    import soundfile

    try:
        info = soundfile.info(path)
        return FileInfo("audio", seconds=float(info.frames) / float(info.samplerate))
    except (RuntimeError, OSError, ValueError, TypeError):
        pass
    import av

    try:
        with av.open(path) as container:
            still = container.format.name == "image2" or container.format.name.endswith("_pipe")
            if container.streams.video and not still:  # a still image PIL cannot read is no video
                next(container.decode(video=0))  # a header alone is not enough: one frame must decode
                return FileInfo("video", seconds=_video_seconds(container))
            if container.streams.audio:
                seconds = float(container.duration) / 1_000_000 if container.duration else None
                return FileInfo("audio", seconds=seconds, readable=False, detail=container.format.name)
    except (av.error.FFmpegError, OSError, ValueError, StopIteration):
        pass
    if path.lower().endswith(".csv"):
        try:
            Path(path).read_text(encoding="utf-8")
            return FileInfo("csv")
        except (UnicodeDecodeError, OSError):
            pass
    return FileInfo(None)


def format_minutes(seconds: float) -> str:
    """A duration as people read a limit: ``90 s``, ``10 min``."""
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def check_input_file(modality: str, path: str | os.PathLike[str], limits: DemoLimits, name: str | None = None) -> None:
    """Refuses a file of the wrong kind for its slot, an unreadable file or a recording over the limit.

    Args:
        modality: the upload slot (``image``, ``video``, ``audio``, ``thermal``, ``depth``, ``imu``).
        path: the uploaded file.
        limits: the duration limits.
        name: the file name shown in messages; default: the file's base name.

    Raises:
        InputError: a message naming the file and what the slot expects (or the limit it exceeds).
    """
    name = name or Path(path).name
    if modality not in SLOT_KINDS:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITY_ORDER}")
    if not Path(path).is_file():
        raise InputError(f"{name}: file not found, {SLOT_WORDS[modality]} expected")
    info = sniff_file(path)
    if info.kind is None:
        raise InputError(f"{name}: not a readable file, the {modality} slot takes {SLOT_WORDS[modality]}")
    if info.kind not in SLOT_KINDS[modality]:
        raise InputError(
            f"{name}: this is {KIND_WORDS[info.kind]}, but the {modality} slot takes {SLOT_WORDS[modality]}"
        )
    if not info.readable:
        raise InputError(f"{name}: {info.detail or 'this'} audio cannot be read here, {SLOT_WORDS[modality]} expected")
    limit = {"audio": limits.max_audio_seconds, "video": limits.max_video_seconds}.get(modality)
    if limit is not None and info.seconds is not None and info.seconds > limit:
        raise InputError(
            f"{name}: {modality} of {format_minutes(info.seconds)} is longer than the limit of {format_minutes(limit)} "
            f"(--max_{modality}_seconds {limit:g})"
        )
