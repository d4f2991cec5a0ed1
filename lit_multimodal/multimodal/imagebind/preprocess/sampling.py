"""Clip placement shared by the audio and video loaders.

pytorchvideo (which the official loaders use for this) no longer imports with torchvision >= 0.17, so the few lines
of ``ConstantClipsPerVideoSampler`` that matter here are re-implemented, including its exact ``Fraction`` arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["constant_clips_per_video"]


def constant_clips_per_video(
    duration: float | Fraction, clip_duration: float | Fraction, clips: int
) -> list[tuple[Fraction, Fraction]]:
    """Start and end times of the clips ``ConstantClipsPerVideoSampler(clip_duration, clips)`` yields.

    The official ``get_clip_timepoints`` calls the sampler until it reports the last clip. With
    ``max_start = max(duration - clip_duration, 0)`` the k-th clip starts at ``k * max_start / max(clips - 1, 1)``
    (k = 0 .. clips-1) and ends ``clip_duration`` later (pytorchvideo's ``ConstantClipsPerVideoSampler`` at the
    commit ImageBind's requirements pin). A recording of ``clip_duration`` or less gives ``clips`` identical clips
    starting at 0; for a longer one the first clip starts at 0 and, with two or more clips, the last ends at the end
    of the recording. The arithmetic follows pytorchvideo's (``Fraction`` after the one float subtraction), so
    ``int(start * rate)`` truncates the same way.

    Args:
        duration: Length of the recording in seconds (for audio, ``num_samples / sample_rate``).
        clip_duration: Length of one clip in seconds.
        clips: Number of clips.

    Returns:
        ``clips`` pairs ``(start, end)`` in seconds, as ``Fraction``.

    Raises:
        ValueError: ``clips < 1`` or ``clip_duration <= 0``.
    """
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    clip_len = Fraction(clip_duration)
    if clip_len <= 0:
        raise ValueError(f"clip_duration must be > 0, got {clip_duration}")
    # Same expression as pytorchvideo: a float duration minus a Fraction is computed in float, then made exact.
    max_start = Fraction(max(duration - clip_len, 0))
    step = Fraction(max_start, max(clips - 1, 1))
    return [(step * k, step * k + clip_len) for k in range(clips)]
