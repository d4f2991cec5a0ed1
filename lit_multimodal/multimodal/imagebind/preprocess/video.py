"""Video input for ImageBind: 5 clips of 2 s, 2 frames each, 3 spatial crops.

Follows the official ``load_and_transform_video_data`` (decord decoder, pytorchvideo transforms). pytorchvideo no
longer imports with current torchvision and decord has no current wheels, so decoding uses PyAV and the few
pytorchvideo pieces (clip sampler, ``get_clip`` frame range, ``UniformTemporalSubsample``, ``ShortSideScale``) and the
official ``SpatialCrop`` are re-implemented here with the same arithmetic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import av

from .errors import InputError, describe_path
from .image import CLIP_MEAN, CLIP_STD
from .sampling import constant_clips_per_video

__all__ = [
    "VIDEO_DEFAULTS",
    "clip_frame_indices",
    "load_video",
    "short_side_scale",
    "spatial_crops",
    "uniform_temporal_subsample",
]

PathLike = str | os.PathLike[str]

#: Defaults of :func:`load_video` (official ``load_and_transform_video_data``), hashed into the settings.
VIDEO_DEFAULTS: dict[str, float | int] = {
    "clips": 5,
    "clip_duration": 2.0,
    "frames_per_clip": 2,
    "size": 224,
    "crops": 3,
}


def uniform_temporal_subsample(num_frames: int, num_samples: int) -> list[int]:
    """Indices of pytorchvideo's ``uniform_temporal_subsample``: ``linspace(0, n - 1, k).clamp(0, n - 1).long()``.

    Args:
        num_frames: Frames in the clip (> 0).
        num_samples: Frames to keep (> 0); repeats frames when larger than ``num_frames``.

    Returns:
        ``num_samples`` frame indices into the clip.
    """
    indices = torch.linspace(0, num_frames - 1, num_samples)
    return torch.clamp(indices, 0, num_frames - 1).long().tolist()


def clip_frame_indices(
    num_frames: int,
    fps: float,
    *,
    clips: int,
    clip_duration: float,
    frames_per_clip: int,
    path: PathLike = "<video>",
) -> list[list[int]]:
    """Indices of the frames each clip keeps, as decord-backed pytorchvideo picks them in the official loader.

    ``duration = num_frames / fps``; clips from ``ConstantClipsPerVideoSampler(clip_duration, clips)``; a clip
    ``[start, end)`` holds the frames ``ceil(fps * start) .. min(ceil(fps * end), num_frames) - 1`` (decord's
    ``get_clip``; on a constant-rate timeline these are the frames whose timestamp ``i / fps`` lies in
    ``[start, end)``); :func:`uniform_temporal_subsample` keeps ``frames_per_clip`` of them (the first and last
    for 2).

    Args:
        num_frames: Frames in the video.
        fps: Average frame rate.
        clips: Clips per video.
        clip_duration: Seconds per clip.
        frames_per_clip: Frames kept per clip.
        path: Named in error messages.

    Returns:
        One list of ``frames_per_clip`` indices per clip.

    Raises:
        InputError: A clip contains no frame (video too short or frame rate too low).
    """
    duration = float(num_frames) / float(fps)
    result = []
    for start, end in constant_clips_per_video(duration, clip_duration, clips):
        first = math.ceil(float(fps) * start)
        stop = min(math.ceil(float(fps) * end), num_frames)
        if stop <= first:
            raise InputError(
                f"{describe_path(path)}: no frame in the clip [{float(start):.3f} s, {float(end):.3f} s) of a video "
                f"of {duration:.3f} s ({num_frames} frames at {float(fps):.3f} fps); at least one frame per "
                f"{clip_duration:g} s clip expected"
            )
        result.append([first + i for i in uniform_temporal_subsample(stop - first, frames_per_clip)])
    return result


def short_side_scale(video: torch.Tensor, size: int) -> torch.Tensor:
    """Resize like pytorchvideo's ``ShortSideScale``: bilinear, no corner alignment, long side ``floor(ratio * size)``.

    Args:
        video: ``(C, T, H, W)`` float32.
        size: Target short side.

    Returns:
        ``(C, T, H', W')`` float32.
    """
    _, _, h, w = video.shape
    if w < h:
        new_h, new_w = int(math.floor((float(h) / w) * size)), size
    else:
        new_h, new_w = size, int(math.floor((float(w) / h) * size))
    return F.interpolate(video, size=(new_h, new_w), mode="bilinear", align_corners=False)


def spatial_crops(video: torch.Tensor, size: int, crops: int = 3) -> list[torch.Tensor]:
    """The official ``SpatialCrop``: left/centre/right crops (top/centre/bottom when taller than wide).

    Offsets along the long side are ``0``, ``ceil((L - size) / 2)`` and ``L - size``; the short side uses the centre
    offset ``ceil((S - size) / 2)``. ``crops=1`` keeps only the centre crop.

    Args:
        video: ``(C, T, H, W)``.
        size: Crop side.
        crops: 3 or 1.

    Returns:
        ``crops`` tensors ``(C, T, size, size)``.

    Raises:
        ValueError: ``crops`` not 1 or 3.
    """
    if crops not in (1, 3):
        raise ValueError(f"crops must be 1 or 3, got {crops}")
    height, width = video.shape[-2:]
    out = []
    for idx in (0, 1, 2) if crops == 3 else (1,):
        y = int(math.ceil((height - size) / 2))
        x = int(math.ceil((width - size) / 2))
        if height > width:
            y = 0 if idx == 0 else height - size if idx == 2 else y
        else:
            x = 0 if idx == 0 else width - size if idx == 2 else x
        out.append(video[:, :, y : y + size, x : x + size])
    return out


def _open(path: PathLike) -> av.container.InputContainer:
    import av  # the decoder loads only when a video is read, so the model and the embedding API import without it

    name = describe_path(path)
    if not os.path.exists(path):
        raise InputError(f"{name}: file not found, a video file expected")
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{name}: not a readable video file ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{name}: no video stream found, a video file expected")
    return container


def _decode(path: PathLike, wanted: set[int]) -> tuple[dict[int, np.ndarray], int]:
    """Decode every frame once; keep the RGB arrays at ``wanted`` indices and count all frames."""
    import av

    kept: dict[int, np.ndarray] = {}
    count = 0
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if count in wanted:
                kept[count] = frame.to_ndarray(format="rgb24")
            count += 1
    except av.error.FFmpegError as exc:
        raise InputError(f"{describe_path(path)}: video could not be decoded after {count} frames ({exc})") from exc
    finally:
        container.close()
    return kept, count


def _probe(path: PathLike) -> tuple[int, Fraction | None]:
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return int(stream.frames or 0), (Fraction(rate) if rate else None)
    finally:
        container.close()


def _video_clips(path: PathLike, *, clips: int, clip_duration: float, frames_per_clip: int) -> list[torch.Tensor]:
    """``clips`` tensors ``(3, frames_per_clip, H, W)`` of uint8-valued floats, in clip order."""
    name = describe_path(path)
    num_frames, fps = _probe(path)
    if fps is None or fps <= 0:
        raise InputError(f"{name}: video stream has no frame rate, a constant-rate video expected")
    indices = (
        clip_frame_indices(
            num_frames, fps, clips=clips, clip_duration=clip_duration, frames_per_clip=frames_per_clip, path=path
        )
        if num_frames > 0
        else []
    )
    kept, decoded = _decode(path, {i for clip in indices for i in clip})
    if decoded == 0:
        raise InputError(f"{name}: video has 0 decodable frames, at least one frame per clip expected")
    if decoded != num_frames:
        # The container's frame count was missing or wrong: place the clips on the frames that really exist.
        indices = clip_frame_indices(
            decoded, fps, clips=clips, clip_duration=clip_duration, frames_per_clip=frames_per_clip, path=path
        )
        missing = {i for clip in indices for i in clip} - kept.keys()
        if missing:
            more, _ = _decode(path, missing)
            kept.update(more)
    out = []
    for clip in indices:
        frames = np.stack([kept[i] for i in clip])  # (T, H, W, 3)
        out.append(torch.from_numpy(frames).permute(3, 0, 1, 2).to(torch.float32))
    return out


def load_video(
    paths: Sequence[PathLike],
    clips: int = 5,
    clip_duration: float = 2.0,
    frames_per_clip: int = 2,
    size: int = 224,
    crops: int = 3,
) -> torch.Tensor:
    """Load videos as the official ``load_and_transform_video_data`` does.

    Per video: ``clips`` clips from :func:`clip_frame_indices` (``frames_per_clip`` frames each, the first and last
    of the clip) → ``/ 255`` → :func:`short_side_scale` to ``size`` → ``NormalizeVideo(CLIP mean, CLIP std)`` →
    :func:`spatial_crops`. Entries are ordered clip by clip, the crops of one clip together (clip 0 left, centre,
    right, clip 1 left, ...). Decoded with PyAV to RGB24; decord (the official decoder) may convert YUV to RGB with
    slightly different rounding.

    Args:
        paths: Video files (anything FFmpeg decodes).
        clips: Clips per video.
        clip_duration: Seconds per clip.
        frames_per_clip: Frames per clip (2 = the vision stem's temporal kernel).
        size: Short side after scaling and crop side.
        crops: Spatial crops per clip, 3 or 1.

    Returns:
        ``(B, clips * crops, 3, frames_per_clip, size, size)`` float32 tensor.

    Raises:
        InputError: Missing or unreadable file, no video stream, no frames, or a clip without frames.
    """
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1, 1, 1)
    outputs = []
    for path in paths:
        entries = []
        for clip in _video_clips(path, clips=clips, clip_duration=clip_duration, frames_per_clip=frames_per_clip):
            clip = short_side_scale(clip / 255.0, size)
            clip = (clip - mean) / std
            entries.extend(spatial_crops(clip, size, crops))
        outputs.append(torch.stack(entries, dim=0))
    return torch.stack(outputs, dim=0)
