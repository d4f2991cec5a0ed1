"""Image-like ImageBind inputs: RGB images (``vision``), thermal images and depth maps.

Vision follows the official ``load_and_transform_vision_data``; thermal follows PandaGPT's
``load_and_transform_thermal_data`` (the official repository has none). Neither repository ships a depth loader, so
:func:`load_depth` reconstructs the Omnivore-style disparity input the depth encoder was trained on; its constants are
community reconstructions and are marked as such in the docstring.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from lit_multimodal.file_kind import npy_problem as _npy_problem

from .errors import InputError, describe_path

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEPTH_DEFAULTS",
    "depth_to_disparity",
    "load_depth",
    "load_thermal",
    "load_vision",
]

PathLike = str | os.PathLike[str]

#: OpenAI CLIP normalisation constants used by the official image and video loaders.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Defaults of :func:`load_depth` (also hashed into the preprocessing settings).
DEPTH_DEFAULTS: dict[str, float | int | bool] = {
    "size": 224,
    "depth_scale": 0.001,
    "png_bit_shift": 0,
    "baseline": 0.075,
    "focal_length": 518.857901,
    "min_depth": 0.01,
    "max_depth": 50.0,
    "normalize": True,
    "max_disparity": 75.0,
    "mean": 0.0418,
    "std": 0.0295,
}

_IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def _open_image(path: PathLike, what: str) -> Image.Image:
    try:
        with open(path, "rb") as fh:
            image = Image.open(fh)
            image.load()
    except FileNotFoundError as exc:
        raise InputError(f"{describe_path(path)}: file not found, {what} expected") from exc
    except _IMAGE_ERRORS as exc:
        raise InputError(f"{describe_path(path)}: not a readable image ({exc}), {what} expected") from exc
    return image


def _image_transform(size: int, normalize: transforms.Normalize | None) -> transforms.Compose:
    steps: list[object] = [
        transforms.Resize(size, interpolation=InterpolationMode.BICUBIC),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
    ]
    if normalize is not None:
        steps.append(normalize)
    return transforms.Compose(steps)


def load_vision(paths: Sequence[PathLike], size: int = 224) -> torch.Tensor:
    """Load RGB images as the official ``load_and_transform_vision_data`` does.

    PIL ``convert("RGB")`` → ``Resize(size, bicubic)`` on the short side → ``CenterCrop(size)`` → ``ToTensor`` →
    ``Normalize(CLIP mean, CLIP std)``.

    Args:
        paths: Image files (anything PIL opens).
        size: Output side; 224 for ImageBind.

    Returns:
        ``(B, 3, size, size)`` float32 tensor.

    Raises:
        InputError: A file is missing or not a readable image.
    """
    transform = _image_transform(size, transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD))
    return torch.stack([transform(_open_image(p, "an RGB image").convert("RGB")) for p in paths], dim=0)


def load_thermal(paths: Sequence[PathLike], size: int = 224) -> torch.Tensor:
    """Load thermal images as PandaGPT's ``load_and_transform_thermal_data`` does.

    PIL ``convert("L")`` → ``Resize(size, bicubic)`` → ``CenterCrop(size)`` → ``ToTensor``: values in [0, 1] and no
    normalisation (the official repository has no thermal loader; PandaGPT's is the reference).

    Args:
        paths: Thermal image files (any PIL mode; colour images are converted to luminance).
        size: Output side; 224 for ImageBind.

    Returns:
        ``(B, 1, size, size)`` float32 tensor.

    Raises:
        InputError: A file is missing or not a readable image.
    """
    transform = _image_transform(size, None)
    return torch.stack([transform(_open_image(p, "a thermal image").convert("L")) for p in paths], dim=0)


def _rotate_right_16(values: np.ndarray, bits: int) -> np.ndarray:
    v = values.astype(np.uint32)
    return (((v >> bits) | (v << (16 - bits))) & 0xFFFF).astype(np.uint16)


def _integer_depth(raw: np.ndarray, path: PathLike, depth_scale: float, png_bit_shift: int) -> np.ndarray:
    if png_bit_shift:
        if raw.min() < 0 or raw.max() > 0xFFFF:
            raise InputError(
                f"{describe_path(path)}: depth values outside 0..65535 with png_bit_shift={png_bit_shift}, "
                "16-bit unsigned depth expected"
            )
        raw = _rotate_right_16(raw, png_bit_shift)
    return raw.astype(np.float64) * depth_scale


def _read_depth_metres(path: PathLike, depth_scale: float, png_bit_shift: int) -> np.ndarray:
    """Read a depth map into an ``(H, W)`` float64 array in metres."""
    name = describe_path(path)
    if os.fspath(path).lower().endswith(".npy"):
        try:
            raw = np.load(path, allow_pickle=False)
        except FileNotFoundError as exc:
            raise InputError(f"{name}: file not found, a depth map expected") from exc
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{name}: not a readable .npy array ({_npy_problem(path, exc)}), a depth map expected"
            ) from exc
        if raw.ndim == 3 and 1 in (raw.shape[0], raw.shape[-1]):
            raw = raw.reshape(raw.shape[1:] if raw.shape[0] == 1 else raw.shape[:-1])
        if raw.ndim == 3 and 3 in (raw.shape[0], raw.shape[-1]):
            raise InputError(
                f"{name}: array of shape {raw.shape} looks like a 3-channel RGB image, "
                "a single-channel depth map (H, W) in metres expected"
            )
        if raw.ndim != 2:
            raise InputError(f"{name}: array of shape {raw.shape}, a depth map of shape (H, W) expected")
        if np.issubdtype(raw.dtype, np.floating):
            return raw.astype(np.float64)
        if np.issubdtype(raw.dtype, np.integer):
            return _integer_depth(raw.astype(np.int64), path, depth_scale, png_bit_shift)
        raise InputError(f"{name}: array of dtype {raw.dtype}, a numeric depth map expected")

    image = _open_image(path, "a depth map")
    mode = image.mode
    if mode == "F":
        return np.asarray(image, dtype=np.float64)
    if mode == "I" or mode.startswith("I;16"):
        return _integer_depth(np.asarray(image).astype(np.int64), path, depth_scale, png_bit_shift)
    if mode in ("L", "LA", "P", "1"):
        raise InputError(
            f"{name}: {mode!r} image with 8 bits per pixel, a 16-bit depth image (millimetres by default) or a "
            "float depth map (.npy/.tiff, metres) expected; 8-bit images hold no metric depth"
        )
    raise InputError(
        f"{name}: {mode!r} colour image (e.g. RGB), a single-channel depth map expected "
        "(16-bit PNG, float TIFF or .npy)"
    )


def depth_to_disparity(
    depth: np.ndarray, *, baseline: float, focal_length: float, min_depth: float, max_depth: float
) -> np.ndarray:
    """Disparity ``baseline * focal_length / clamp(depth, min_depth, max_depth)``; invalid depth gives 0.

    Args:
        depth: Depth in metres. Zero, negative and non-finite values are "no measurement".
        baseline: Stereo baseline in metres.
        focal_length: Focal length in pixels.
        min_depth: Lower clamp of valid depth, metres.
        max_depth: Upper clamp of valid depth, metres.

    Returns:
        Disparity in pixels, same shape, float64; 0 where the depth is invalid.
    """
    valid = np.isfinite(depth) & (depth > 0)
    clamped = np.clip(np.where(valid, depth, 1.0), min_depth, max_depth)
    return np.where(valid, baseline * focal_length / clamped, 0.0)


def load_depth(
    paths: Sequence[PathLike],
    *,
    size: int = 224,
    depth_scale: float = 0.001,
    png_bit_shift: int = 0,
    baseline: float = 0.075,
    focal_length: float = 518.857901,
    min_depth: float = 0.01,
    max_depth: float = 50.0,
    normalize: bool = True,
    max_disparity: float = 75.0,
    mean: float = 0.0418,
    std: float = 0.0295,
) -> torch.Tensor:
    """Load depth maps as single-channel disparity, the form ImageBind's depth encoder was trained on.

    Neither the official repository nor PandaGPT has a depth loader; this follows the Omnivore recipe the ImageBind
    authors pointed users to (facebookresearch/omnivore#12, ImageBind issues #69/#107/#134), with these steps:

    1. Read depth in metres: ``.npy`` float arrays and float (mode ``F``) TIFF/PNG are metres; 16-bit PNG (or
       integer ``.npy``) values are multiplied by ``depth_scale`` (default 0.001: millimetres, the Kinect/NYU
       convention). SUN RGB-D stores millimetres rotated left by 3 bits: pass ``png_bit_shift=3`` to undo it
       (the toolbox's ``bitor(bitshift(d,-3), bitshift(d,16-3))``).
    2. Disparity = ``baseline * focal_length / clamp(depth, min_depth, max_depth)``. Defaults: baseline 0.075 m
       (Kinect, from the Omnivore snippet), focal length 518.857901 px (NYU-v2 Kinect f_x, used in issue #107),
       clamp [0.01, 50] m (Omnivore snippet). Zero/negative/non-finite depth (no measurement) gives disparity 0.
       Use the real intrinsics of your camera where known; disparity scales with ``baseline * focal_length``.
    3. Optional normalisation, **on by default**: Omnivore's ``DepthNorm(max_depth=75, clamp_max_before_scale=True)``
       (clamp to ``[0.01, max_disparity]``, divide by ``max_disparity``), then after resizing
       ``(x - mean) / std`` with mean 0.0418 and std 0.0295. These constants come from Omnivore's RGB-D transform and
       are **unverified** for ImageBind; they are on by default because raw disparities (tens of pixels) are far
       outside the range of a normalised input, and the community reproductions of the paper's SUN RGB-D/NYU numbers
       (issues #107, #134) use a standardised disparity. ``normalize=False`` returns the raw disparity.
    4. ``Resize(size)`` on the short side (bilinear with antialiasing, as Omnivore's tensor ``T.Resize``; bicubic
       could overshoot at depth edges) → ``CenterCrop(size)``.

    8-bit images are rejected rather than guessed at: an 8-bit PNG is almost always a visualisation without metric
    depth. Convert such data to a float ``.npy`` in metres first.

    Args:
        paths: Depth files: ``.npy`` (H, W) float metres or integer units, 16-bit PNG, float TIFF.
        size: Output side; 224 for ImageBind.
        depth_scale: Metres per unit of integer depth images (0.001 = millimetres).
        png_bit_shift: Right-rotate 16-bit values by this many bits before scaling (3 for SUN RGB-D).
        baseline: Stereo baseline in metres.
        focal_length: Focal length in pixels.
        min_depth: Depth clamp, metres (lower).
        max_depth: Depth clamp, metres (upper).
        normalize: Apply the DepthNorm + mean/std normalisation of step 3.
        max_disparity: DepthNorm's clamp and divisor.
        mean: Normalisation mean (unverified community constant).
        std: Normalisation std (unverified community constant).

    Returns:
        ``(B, 1, size, size)`` float32 tensor.

    Raises:
        InputError: A file is missing or unreadable, is 8-bit, is an RGB image, or has the wrong shape.
    """
    outputs = []
    for path in paths:
        depth = _read_depth_metres(path, depth_scale, png_bit_shift)
        disparity = depth_to_disparity(
            depth, baseline=baseline, focal_length=focal_length, min_depth=min_depth, max_depth=max_depth
        )
        x = torch.from_numpy(disparity).to(torch.float32).unsqueeze(0)
        if normalize:
            x = x.clamp(min=0.01, max=max_disparity) / max_disparity
        x = TF.resize(x, [size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        x = TF.center_crop(x, [size, size])
        if normalize:
            x = (x - mean) / std
        outputs.append(x)
    return torch.stack(outputs, dim=0)
