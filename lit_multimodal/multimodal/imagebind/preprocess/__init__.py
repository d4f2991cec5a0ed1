"""Input loaders for the six ImageBind modalities.

``LOADERS[modality](items, **options)`` turns files (or, for ``text``, strings) into the batched tensor the encoder
of that modality takes; :func:`load_inputs` dispatches on the official modality key, and on ``"video"``, whose
output is a ``vision`` input (:data:`ENCODER_KEY`). :func:`preprocess_settings`
gives the flat, JSON-serialisable description of everything that determines a loader's output (for embedding cache
keys); it changes whenever the output would, through the options or the per-modality ``version``.

======== ==================================== ===========================================
modality input                                output
======== ==================================== ===========================================
vision   image files                          ``(B, 3, 224, 224)``
text     strings                              ``(B, 77)`` int64
audio    WAV/FLAC files                       ``(B, 3, 1, 128, 204)``
depth    .npy / 16-bit PNG / float TIFF       ``(B, 1, 224, 224)``
thermal  image files                          ``(B, 1, 224, 224)``
imu      .npy / .csv                          ``(B, 6, 2000)``
video    video files (key ``"video"`` here,   ``(B, 15, 3, 2, 224, 224)``
         ``"vision"`` in the model)
======== ==================================== ===========================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .audio import AUDIO_DEFAULTS, IMAGEBIND_FBANK_KWARGS, kaldi_fbank, load_audio
from .errors import InputError
from .image import CLIP_MEAN, CLIP_STD, DEPTH_DEFAULTS, load_depth, load_thermal, load_vision
from .imu import IMU_DEFAULTS, load_imu
from .text import CONTEXT_LENGTH, EOT_TOKEN, SOT_TOKEN, load_text
from .video import VIDEO_DEFAULTS, load_video

__all__ = [
    "ENCODER_KEY",
    "EXTRA_LOADERS",
    "LOADERS",
    "PREPROCESS_SETTINGS",
    "InputError",
    "kaldi_fbank",
    "load_audio",
    "load_depth",
    "load_imu",
    "load_inputs",
    "load_text",
    "load_thermal",
    "load_video",
    "load_vision",
    "preprocess_settings",
]

#: Loader per official ImageBind modality key.
LOADERS: dict[str, Callable[..., torch.Tensor]] = {
    "vision": load_vision,
    "text": load_text,
    "audio": load_audio,
    "depth": load_depth,
    "thermal": load_thermal,
    "imu": load_imu,
}

#: Loaders whose output goes to another modality's encoder: videos are ``vision`` inputs (``ENCODER_KEY``).
EXTRA_LOADERS: dict[str, Callable[..., torch.Tensor]] = {"video": load_video}

#: The model input key each loader's output is passed under.
ENCODER_KEY: dict[str, str] = {**{m: m for m in LOADERS}, "video": "vision"}

# Bump a modality's version whenever its loader's output changes for the same options.
_VERSIONS = {"vision": 1, "text": 1, "audio": 2, "depth": 1, "thermal": 1, "imu": 1, "video": 2}

# Options each loader accepts, with defaults (the keys callers may override).
_OPTIONS: dict[str, dict[str, Any]] = {
    "vision": {"size": 224},
    "text": {"context_length": CONTEXT_LENGTH},
    "audio": dict(AUDIO_DEFAULTS),
    "depth": dict(DEPTH_DEFAULTS),
    "thermal": {"size": 224},
    "imu": dict(IMU_DEFAULTS),
    "video": dict(VIDEO_DEFAULTS),
}

# Fixed parts of each pipeline (not options, but part of what determines the output).
_FIXED: dict[str, dict[str, Any]] = {
    "vision": {
        "pipeline": "pil_rgb>resize_short_bicubic>center_crop>to_tensor>normalize",
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
    },
    "text": {
        "pipeline": "open_clip_simple_tokenizer(bpe_simple_vocab_16e6,clean=lower)>sot+ids[:ctx-1]+eot>zero_pad",
        "sot": SOT_TOKEN,
        "eot": EOT_TOKEN,
    },
    "audio": {
        "pipeline": "soundfile_f32>resample_poly_kaiser5>constant_clips>demean_inplace>kaldi_fbank_ch0>pad_right0"
        ">normalize",
        **{f"fbank_{k}": v for k, v in IMAGEBIND_FBANK_KWARGS.items()},
        "fbank_preemphasis": 0.97,
        "fbank_low_freq": 20.0,
        "fbank_high_freq": 0.0,
        "fbank_round_to_power_of_two": True,
        "fbank_snip_edges": True,
        "fbank_remove_dc_offset": True,
    },
    "depth": {
        "pipeline": "read_metres>disparity(clamp,invalid=0)>[depthnorm]>resize_short_bilinear_aa>center_crop"
        ">[normalize]",
        "depthnorm_min": 0.01,
    },
    "thermal": {"pipeline": "pil_l>resize_short_bicubic>center_crop>to_tensor"},
    "imu": {"pipeline": "read(6,N)>cut_or_zero_pad|linear_resample", "channels": 6},
    "video": {
        "pipeline": "pyav_rgb24>constant_clips(decord_index)>uniform_subsample>/255>short_side_bilinear>normalize"
        ">spatial_crops",
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
    },
}

#: Default settings per modality (what :func:`preprocess_settings` returns without overrides).
PREPROCESS_SETTINGS: dict[str, dict[str, Any]] = {}


def preprocess_settings(modality: str, **overrides: Any) -> dict[str, Any]:
    """Flat, JSON-serialisable settings that determine the output of ``load_inputs(modality, items, **overrides)``.

    Args:
        modality: A key of :data:`LOADERS` or :data:`EXTRA_LOADERS`.
        **overrides: Loader options as passed to :func:`load_inputs`.

    Returns:
        ``{"modality", "version", <every option with its value>, <fixed pipeline constants>}``; values are str,
        int, float, bool or lists of floats.

    Raises:
        KeyError: Unknown modality.
        TypeError: An option the loader does not take.
    """
    if modality not in _OPTIONS:
        raise KeyError(f"unknown modality {modality!r}; expected one of {sorted(_OPTIONS)}")
    unknown = set(overrides) - set(_OPTIONS[modality])
    if unknown:
        raise TypeError(f"{modality} loader has no option(s) {sorted(unknown)}; options: {sorted(_OPTIONS[modality])}")
    settings: dict[str, Any] = {"modality": modality, "version": _VERSIONS[modality]}
    for key, default in _OPTIONS[modality].items():
        value = overrides.get(key, default)
        settings[key] = type(default)(value) if isinstance(default, bool | int | float) else value
    settings.update(_FIXED[modality])
    return settings


for _modality in _OPTIONS:
    PREPROCESS_SETTINGS[_modality] = preprocess_settings(_modality)


def load_inputs(modality: str, items: Sequence[Any], **options: Any) -> torch.Tensor:
    """Load a batch of inputs for one modality.

    Args:
        modality: ``vision``, ``text``, ``audio``, ``depth``, ``thermal``, ``imu`` or ``video``.
        items: File paths (strings for ``text``).
        **options: Loader options (see :func:`preprocess_settings` for the names and defaults).

    Returns:
        The batched input tensor of that modality.

    Raises:
        KeyError: Unknown modality.
        TypeError: Unknown option.
        InputError: An input cannot be loaded; the message names it.
    """
    loader = LOADERS.get(modality) or EXTRA_LOADERS.get(modality)
    if loader is None:
        raise KeyError(f"unknown modality {modality!r}; expected one of {sorted(_OPTIONS)}")
    preprocess_settings(modality, **options)  # validates the option names
    return loader(items, **options)
