"""Audio input for ImageBind: 3 clips of 2 s as 128-bin Kaldi log-mel filter banks.

Follows the official ``load_and_transform_audio_data`` step by step, without torchaudio (not importable on every
machine this project runs on): files are read with soundfile, resampled with ``scipy.signal.resample_poly`` and the
filter bank is :func:`kaldi_fbank`, a plain-torch port of ``torchaudio.compliance.kaldi.fbank``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from .errors import InputError, describe_path
from .sampling import constant_clips_per_video

__all__ = ["AUDIO_DEFAULTS", "kaldi_fbank", "kaldi_mel_banks", "load_audio", "read_audio", "waveform_to_melspec"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Defaults of :func:`load_audio` (official ``load_and_transform_audio_data``), hashed into the settings.
AUDIO_DEFAULTS: dict[str, float | int] = {
    "clips": 3,
    "clip_duration": 2.0,
    "sample_rate": 16000,
    "num_mel_bins": 128,
    "target_length": 204,
    "mean": -4.268,
    "std": 9.138,
}

#: The fbank arguments of the official ``waveform2melspec`` (the rest are torchaudio's defaults).
IMAGEBIND_FBANK_KWARGS: dict[str, object] = {
    "htk_compat": True,
    "use_energy": False,
    "window_type": "hanning",
    "dither": 0.0,
    "frame_length_ms": 25.0,
    "frame_shift_ms": 10.0,
}

_WINDOWS = ("hanning", "hamming", "povey", "rectangular", "blackman")


def _mel(freq: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(freq, torch.Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log(1.0 + freq / 700.0)


def kaldi_mel_banks(
    num_bins: int, padded_window_size: int, sample_frequency: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """Kaldi's triangular mel filters over the FFT bins (``get_mel_banks`` without VTLN warping).

    The ``num_bins + 2`` edges are equally spaced on ``mel(f) = 1127 ln(1 + f / 700)`` between ``low_freq`` and
    ``high_freq`` (``high_freq <= 0`` counts back from Nyquist); bin ``m`` rises from edge ``m`` to ``m + 1`` and
    falls to ``m + 2``, evaluated at the mel value of each FFT bin centre ``k * sample_frequency / padded``,
    ``k = 0 .. padded / 2 - 1``. The Nyquist bin gets weight 0, as in Kaldi.

    Args:
        num_bins: Number of mel bins (> 3).
        padded_window_size: FFT size (even).
        sample_frequency: Sample rate in Hz.
        low_freq: Lowest filter edge in Hz.
        high_freq: Highest filter edge in Hz; ``<= 0`` means ``nyquist + high_freq``.

    Returns:
        ``(num_bins, padded_window_size // 2 + 1)`` float64 weights.

    Raises:
        ValueError: Inconsistent sizes or frequencies.
    """
    if num_bins <= 3:
        raise ValueError("Must have at least 3 mel bins")
    if padded_window_size % 2:
        raise ValueError(f"padded window size must be even, got {padded_window_size}")
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"bad values low_freq={low_freq}, high_freq={high_freq} for nyquist {nyquist}")
    fft_bin_width = sample_frequency / padded_window_size
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    m = torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)
    left, center, right = mel_low + m * delta, mel_low + (m + 1.0) * delta, mel_low + (m + 2.0) * delta
    mel = _mel(fft_bin_width * torch.arange(padded_window_size // 2, dtype=torch.float64)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


def _window(window_type: str, size: int, blackman_coeff: float, dtype: torch.dtype) -> torch.Tensor:
    if window_type == "hanning":
        return torch.hann_window(size, periodic=False, dtype=dtype)
    if window_type == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=dtype)
    if window_type == "povey":
        return torch.hann_window(size, periodic=False, dtype=dtype).pow(0.85)
    if window_type == "rectangular":
        return torch.ones(size, dtype=dtype)
    if window_type == "blackman":
        a = 2 * math.pi / (size - 1)
        n = torch.arange(size, dtype=torch.float64)
        w = blackman_coeff - 0.5 * torch.cos(a * n) + (0.5 - blackman_coeff) * torch.cos(2 * a * n)
        return w.to(dtype)
    raise ValueError(f"window_type {window_type!r} not one of {_WINDOWS}")


def _frames(x: torch.Tensor, window_size: int, window_shift: int, snip_edges: bool) -> torch.Tensor:
    n = x.shape[0]
    if snip_edges:
        if n < window_size:
            return x.new_empty((0, window_size))
        count = 1 + (n - window_size) // window_shift
    else:
        # Kaldi's reflection without repeating the edge sample: frame centres at (i + 0.5) * shift.
        count = (n + window_shift // 2) // window_shift
        pad = window_size // 2 - window_shift // 2
        reversed_x = torch.flip(x, [0])
        if pad > 0:
            x = torch.cat((reversed_x[-pad:], x, reversed_x), dim=0)
        else:
            x = torch.cat((x[-pad:], reversed_x), dim=0)
    return x.as_strided((count, window_size), (window_shift * x.stride(0), x.stride(0)))


def kaldi_fbank(
    waveform: torch.Tensor,
    *,
    sample_frequency: float = 16000.0,
    num_mel_bins: int = 23,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    window_type: str = "povey",
    dither: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    htk_compat: bool = False,
    use_energy: bool = False,
    use_log_fbank: bool = True,
    use_power: bool = True,
    snip_edges: bool = True,
    channel: int = -1,
    raw_energy: bool = True,
    energy_floor: float = 1.0,
    blackman_coeff: float = 0.42,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Kaldi-compatible log-mel filter bank, the semantics of ``torchaudio.compliance.kaldi.fbank``.

    Written by hand because torchaudio cannot be imported everywhere this project runs and no other installed
    library implements Kaldi's framing, pre-emphasis and mel banks. Defaults are torchaudio's (``frame_length`` and
    ``frame_shift`` are renamed ``*_ms``; VTLN warping and ``subtract_mean`` are not supported). Steps:

    1. Take ``waveform[max(channel, 0)]``; window ``int(sf * length_ms / 1000)`` samples, shift likewise.
    2. Frames: with ``snip_edges`` only complete frames, ``1 + (n - window) // shift`` of them; otherwise Kaldi's
       reflected edges and ``(n + shift // 2) // shift`` frames.
    3. Per frame: optional Gaussian dither, subtract the frame mean (``remove_dc_offset``), raw log energy, then
       pre-emphasis ``x[j] -= c * x[j - 1]`` with ``x[0] -= c * x[0]``, the window (``hanning`` is
       ``torch.hann_window(periodic=False)``, ``povey`` its 0.85th power), zero-padding to the next power of two.
    4. ``|rfft|`` (squared if ``use_power``), times :func:`kaldi_mel_banks`, ``log(max(x, float32 eps))``.
    5. With ``use_energy`` the log energy is appended last (``htk_compat``) or prepended.

    Args:
        waveform: ``(channels, samples)`` or ``(samples,)`` float tensor.
        sample_frequency: Sample rate in Hz.
        num_mel_bins: Number of mel bins.
        frame_length_ms: Frame length in milliseconds.
        frame_shift_ms: Frame shift in milliseconds.
        window_type: ``hanning``, ``hamming``, ``povey``, ``rectangular`` or ``blackman``.
        dither: Standard deviation of Gaussian dither (0 for none).
        preemphasis_coefficient: Pre-emphasis coefficient in [0, 1].
        remove_dc_offset: Subtract each frame's mean.
        round_to_power_of_two: Zero-pad each frame to the next power of two before the FFT.
        low_freq: Lowest mel filter edge in Hz.
        high_freq: Highest mel filter edge in Hz; ``<= 0`` is an offset from Nyquist.
        htk_compat: Put the energy last instead of first (only matters with ``use_energy``).
        use_energy: Add the log-energy column.
        use_log_fbank: Return log mel energies.
        use_power: Power spectrum instead of magnitude.
        snip_edges: Only frames that fit completely in the signal.
        channel: Channel to use (negative means 0).
        raw_energy: Energy before pre-emphasis and window.
        energy_floor: Floor of the energy (``log`` of it), 0 for none.
        blackman_coeff: Coefficient of the Blackman window.
        generator: Random generator for the dither.

    Returns:
        ``(frames, num_mel_bins)`` (plus one energy column with ``use_energy``) in the waveform's dtype.

    Raises:
        ValueError: Bad channel, window longer than the signal, or bad parameters.
    """
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be (channels, samples), got shape {tuple(waveform.shape)}")
    channel = max(channel, 0)
    if channel >= waveform.shape[0]:
        raise ValueError(f"Invalid channel {channel} for size {waveform.shape[0]}")
    x = waveform[channel].contiguous()
    dtype = x.dtype
    window_shift = int(sample_frequency * frame_shift_ms * 0.001)
    window_size = int(sample_frequency * frame_length_ms * 0.001)
    padded = (1 if window_size == 0 else 2 ** (window_size - 1).bit_length()) if round_to_power_of_two else window_size
    if not 2 <= window_size <= x.shape[0]:
        raise ValueError(f"choose a window size {window_size} that is [2, {x.shape[0]}]")
    if window_shift <= 0:
        raise ValueError("frame shift must be greater than 0")
    if padded % 2:
        raise ValueError(f"the padded window size must be even, got {padded}")
    if not 0.0 <= preemphasis_coefficient <= 1.0:
        raise ValueError("preemphasis_coefficient must be in [0, 1]")
    eps = torch.tensor(torch.finfo(torch.float).eps, dtype=dtype)

    frames = _frames(x, window_size, window_shift, snip_edges)
    if dither != 0.0:
        frames = frames + torch.randn(frames.shape, dtype=dtype, generator=generator) * dither
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)

    def log_energy(f: torch.Tensor) -> torch.Tensor:
        e = torch.maximum(f.pow(2).sum(1), eps).log()
        return e if energy_floor == 0.0 else torch.clamp(e, min=math.log(energy_floor))

    energy = log_energy(frames) if raw_energy else None
    if preemphasis_coefficient != 0.0:
        previous = torch.cat((frames[:, :1], frames[:, :-1]), dim=1)
        frames = frames - preemphasis_coefficient * previous
    frames = frames * _window(window_type, window_size, blackman_coeff, dtype).unsqueeze(0)
    if padded != window_size:
        frames = torch.nn.functional.pad(frames, (0, padded - window_size))
    if energy is None:
        energy = log_energy(frames)

    spectrum = torch.fft.rfft(frames).abs()
    if use_power:
        spectrum = spectrum.pow(2.0)
    banks = kaldi_mel_banks(num_mel_bins, padded, sample_frequency, low_freq, high_freq).to(dtype)
    mel = spectrum @ banks.T
    if use_log_fbank:
        mel = torch.maximum(mel, eps).log()
    if use_energy:
        column = energy.unsqueeze(1)
        mel = torch.cat((mel, column), dim=1) if htk_compat else torch.cat((column, mel), dim=1)
    return mel


def read_audio(path: PathLike, sample_rate: int = 16000) -> torch.Tensor:
    """Read an audio file as ``(channels, samples)`` float32 at ``sample_rate``.

    soundfile gives ``(frames, channels)`` floats scaled like ``torchaudio.load`` (PCM divided by 2^(bits-1)).
    Resampling uses ``scipy.signal.resample_poly`` (Kaiser-windowed polyphase filter, output length
    ``ceil(n * new / old)`` like torchaudio); torchaudio's ``functional.resample`` used by the official loader is a
    Hann-windowed sinc with 6 zero crossings, so resampled inputs differ from the official ones slightly (the
    filters differ near Nyquist), while 16 kHz files are bit-identical.

    Args:
        path: WAV, FLAC, OGG or any format libsndfile reads.
        sample_rate: Target sample rate in Hz.

    Returns:
        ``(channels, samples)`` float32 tensor.

    Raises:
        InputError: Missing, unreadable or empty file.
    """
    import soundfile  # loads libsndfile on first use only, so the model and the embedding API import without it

    name = describe_path(path)
    if not os.path.exists(path):
        raise InputError(f"{name}: file not found, an audio file (WAV/FLAC) expected")
    try:
        data, sr = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise InputError(f"{name}: not a readable audio file ({exc}), WAV/FLAC expected") from exc
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise InputError(f"{name}: audio is empty (0 samples), at least one 25 ms frame expected")
    waveform = np.ascontiguousarray(data.T)
    if sr != sample_rate:
        from scipy.signal import resample_poly  # imported here: scipy.signal takes seconds to import

        g = math.gcd(int(sr), int(sample_rate))
        waveform = resample_poly(waveform.astype(np.float64), sample_rate // g, int(sr) // g, axis=-1)
        waveform = waveform.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(waveform))


def waveform_to_melspec(clip: torch.Tensor, sample_rate: int, num_mel_bins: int, target_length: int) -> torch.Tensor:
    """The official ``waveform2melspec``: DC removal, fbank, transpose, right zero-pad or cut.

    ``clip`` is modified in place (``clip -= clip.mean()``), as in the official code where the clip is a view of the
    whole recording, so overlapping clips see each other's mean removal.

    Args:
        clip: ``(channels, samples)`` float32; only channel 0 enters the fbank, the mean is over all channels.
        sample_rate: Sample rate in Hz.
        num_mel_bins: Number of mel bins.
        target_length: Number of frames after padding/cutting.

    Returns:
        ``(1, num_mel_bins, target_length)`` float32.
    """
    clip -= clip.mean()
    fbank = kaldi_fbank(clip, sample_frequency=sample_rate, num_mel_bins=num_mel_bins, **IMAGEBIND_FBANK_KWARGS)
    fbank = fbank.transpose(0, 1)
    n_frames = fbank.shape[1]
    p = target_length - n_frames
    if abs(p) / n_frames > 0.2:
        logger.warning(
            "Large gap between audio n_frames(%d) and target_length (%d). Is the audio_target_length setting correct?",
            n_frames,
            target_length,
        )
    if p > 0:
        fbank = torch.nn.functional.pad(fbank, (0, p), mode="constant", value=0.0)
    elif p < 0:
        fbank = fbank[:, :target_length]
    return fbank.unsqueeze(0)


def load_audio(
    paths: Sequence[PathLike],
    clips: int = 3,
    clip_duration: float = 2.0,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    target_length: int = 204,
    mean: float = -4.268,
    std: float = 9.138,
) -> torch.Tensor:
    """Load audio files as the official ``load_and_transform_audio_data`` does.

    Read and resample to ``sample_rate`` (:func:`read_audio`); ``clips`` clips of ``clip_duration`` seconds placed
    by ``ConstantClipsPerVideoSampler`` on ``duration = samples / sample_rate`` (starts ``k * max(D - 2, 0) / 3``),
    sliced ``[int(start * sr) : int(end * sr)]`` (shorter at the end of a short file); per clip
    :func:`waveform_to_melspec` (mean removal over all channels, Kaldi fbank of channel 0 with 25 ms Hann frames,
    10 ms shift, 128 bins; a 2 s clip gives 198 frames, zero-padded to 204); then ``(x - mean) / std`` after the
    padding, so padded frames hold ``(0 - mean) / std = +0.467``.

    Args:
        paths: Audio files.
        clips: Clips per file.
        clip_duration: Seconds per clip.
        sample_rate: Sample rate the fbank is computed at.
        num_mel_bins: Mel bins.
        target_length: Frames per clip after padding/cutting.
        mean: Normalisation mean (AudioSet statistics of the official loader).
        std: Normalisation std.

    Returns:
        ``(B, clips, 1, num_mel_bins, target_length)`` float32 tensor.

    Raises:
        InputError: A file is missing, unreadable, empty, or shorter than one 25 ms fbank frame.
    """
    window = int(sample_rate * 25.0 * 0.001)  # one fbank frame (frame_length_ms of IMAGEBIND_FBANK_KWARGS)
    outputs = []
    for path in paths:
        waveform = read_audio(path, sample_rate).clone()
        n = waveform.shape[1]
        if n < window:
            raise InputError(
                f"{describe_path(path)}: audio has {n / sample_rate:.4f} s ({n} samples at {sample_rate} Hz), "
                f"at least {window / sample_rate:.3f} s (one 25 ms fbank frame) expected"
            )
        specs = []
        for start, end in constant_clips_per_video(n / sample_rate, clip_duration, clips):
            clip = waveform[:, int(start * sample_rate) : int(end * sample_rate)]
            if clip.shape[1] < window:
                raise InputError(
                    f"{describe_path(path)}: a clip at {float(start):.3f} s has {clip.shape[1]} samples, "
                    f"at least {window} (one 25 ms fbank frame) expected"
                )
            specs.append((waveform_to_melspec(clip, sample_rate, num_mel_bins, target_length) - mean) / std)
        outputs.append(torch.stack(specs, dim=0))
    return torch.stack(outputs, dim=0)
